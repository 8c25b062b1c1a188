"""Privacy requests: redaction of a customer or a whole shop, and the export that answers
a customer's data request.

Deliveries do not record their customer: they are reached through the events they
produced (`events.delivery_id`), and events through their identifiers (order ids,
customer id, e-mail and phone hashes), following cart and checkout tokens found on the
customer's own events. A delivery that produced no event (an ignored topic, a failed
conversion, a repeat of an order already counted) is found by searching the kept raw
bodies for the customer's ids and tokens. Redaction nulls raw bodies, drops events'
identifiers (the events stay, for counting) and deletes click-store entries.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import LargeBinary, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection, Engine

from adapters.values import PrivacyRequest
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import clicks, deliveries, event_identifiers, events, reading

log = logging.getLogger(__name__)

Pair = tuple[str, str]
#: Identifier kinds that appear in clear in webhook bodies (hashes do not).
CLEAR_KINDS = frozenset({"customer_id", "order_id", "cart_token", "checkout_token"})
#: Rounds of following identifiers from the customer's events to the events sharing them.
_ROUNDS = 4


@dataclass(frozen=True)
class Redacted:
    """What a redaction changed."""

    events: int = 0
    bodies: int = 0
    clicks: int = 0


def seeds(*, customer_id: str | None = None, email_sha256: str | None = None,
          phone_sha256: str | None = None, order_ids: Iterable[str] = ()) -> set[Pair]:
    """The identifiers a request names the customer by."""
    found = {("customer_id", customer_id), ("email_sha256", email_sha256), ("phone_sha256", phone_sha256)}
    found |= {("order_id", o) for o in order_ids}
    return {(k, v) for k, v in found if v}


def _matching(column_kind, column_value, pairs: set[Pair]):
    return or_(*(and_(column_kind == k, column_value == v) for k, v in sorted(pairs)))


def customer_events(conn: Connection, store_id: str, pairs: set[Pair]) -> tuple[set[int], set[Pair]]:
    """The customer's event ids and every identifier found on them (with `pairs`)."""
    ei = event_identifiers.c
    known, ids = set(pairs), set()
    for _ in range(_ROUNDS):
        if not known:
            break
        found = set(conn.execute(select(ei.event_id).where(
            ei.store_id == store_id, _matching(ei.kind, ei.value, known))).scalars())
        if found <= ids:
            break
        ids |= found
        more = {(row.kind, row.value) for row in conn.execute(
            select(ei.kind, ei.value).where(ei.event_id.in_(sorted(ids))))}
        known |= more
    return ids, known


class Privacy:
    """Carries out privacy requests against the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def apply(self, store: StoreConfig, request: PrivacyRequest, *, now: datetime) -> Redacted | None:
        """Do what `request` asks for `store` (the pipeline calls this for privacy topics)."""
        if request.action == "redact_shop":
            done = self.redact_shop(store.id)
        elif request.action == "redact_customer":
            done = self.redact_customer(store.id, seeds(
                customer_id=request.customer_id, email_sha256=request.email_sha256,
                phone_sha256=request.phone_sha256, order_ids=request.order_ids))
        else:
            # The customer id is the platform's own number, not contact data.
            log.warning("store %s: customer data request received; answer it with "
                        "`kwai-bridge privacy export --store %s --customer %s`",
                        store.id, store.id, request.customer_id or "?")
            return None
        log.info("store %s: %s done: %d event(s), %d body(ies), %d click(s)",
                 store.id, request.action, done.events, done.bodies, done.clicks)
        return done

    def redact_customer(self, store_id: str, pairs: set[Pair]) -> Redacted:
        """Remove what is held about the customer named by `pairs`."""
        if not pairs:
            return Redacted()
        e, d, c = events.c, deliveries.c, clicks.c
        with self.engine.begin() as conn:
            ids, known = customer_events(conn, store_id, pairs)
            bodies = 0
            if ids:
                delivery_ids = select(e.delivery_id).where(e.id.in_(sorted(ids)), e.delivery_id.is_not(None))
                bodies = conn.execute(update(deliveries).where(
                    d.id.in_(delivery_ids), d.body.is_not(None)).values(body=None)).rowcount
                conn.execute(update(events).where(e.id.in_(sorted(ids))).values(identifiers=None))
                conn.execute(delete(event_identifiers).where(event_identifiers.c.event_id.in_(sorted(ids))))
            bodies += self._null_bodies_mentioning(conn, store_id, known)
            removed = conn.execute(delete(clicks).where(
                c.store_id == store_id, _matching(c.kind, c.value, known))).rowcount
        return Redacted(events=len(ids), bodies=bodies, clicks=removed)

    @staticmethod
    def _null_bodies_mentioning(conn: Connection, store_id: str, known: set[Pair]) -> int:
        # Ids and tokens appear in clear in the bodies (hashes do not). A short number may
        # also match another one: nulling too many bodies only costs reprocessing.
        needles = sorted({value.encode() for kind, value in known if kind in CLEAR_KINDS and len(value) >= 3})
        if not needles:
            return 0
        d = deliveries.c
        found = []
        for i, needle in enumerate(needles):
            name = f"needle_{i}"
            if conn.dialect.name == "postgresql":
                found.append(text(f"position(:{name} in deliveries.body) > 0")
                             .bindparams(bindparam(name, needle, type_=LargeBinary)))
            else:
                found.append(func.instr(d.body, bindparam(name, needle, type_=LargeBinary)) > 0)
        return conn.execute(update(deliveries).where(
            d.store_id == store_id, d.body.is_not(None), or_(*found)).values(body=None)).rowcount

    def redact_shop(self, store_id: str) -> Redacted:
        """Remove everything personal held for a store: bodies, identifiers, clicks."""
        e, d = events.c, deliveries.c
        with self.engine.begin() as conn:
            bodies = conn.execute(update(deliveries).where(
                d.store_id == store_id, d.body.is_not(None)).values(body=None)).rowcount
            touched = conn.execute(update(events).where(
                e.store_id == store_id, e.identifiers.is_not(None)).values(identifiers=None)).rowcount
            conn.execute(delete(event_identifiers).where(event_identifiers.c.store_id == store_id))
            removed = conn.execute(delete(clicks).where(clicks.c.store_id == store_id)).rowcount
        return Redacted(events=touched, bodies=bodies, clicks=removed)

    def export(self, store_id: str, pairs: set[Pair]) -> dict[str, Any]:
        """What is held about the customer named by `pairs`, as JSON-ready data."""
        e, d, c = events.c, deliveries.c, clicks.c
        with reading(self.engine) as conn:
            ids, known = customer_events(conn, store_id, pairs) if pairs else (set(), set())
            rows = conn.execute(select(events).where(e.id.in_(sorted(ids))).order_by(e.id)).mappings().all()
            delivery_ids = sorted({r["delivery_id"] for r in rows if r["delivery_id"] is not None})
            kept = conn.execute(select(deliveries).where(d.id.in_(delivery_ids)).order_by(d.id)).mappings().all()
            held = conn.execute(select(clicks).where(
                c.store_id == store_id, _matching(c.kind, c.value, known)).order_by(c.kind, c.value)
            ).mappings().all() if known else []
        return {
            "store": store_id,
            "asked_by": [{"kind": k, "value": v} for k, v in sorted(pairs)],
            "events": [_event(r) for r in rows],
            "clicks": [{"kind": r["kind"], "value": r["value"], "click_id": r["click_id"],
                        "clicked_at": r["clicked_at"].isoformat(), "order_key": r["order_key"]} for r in held],
            "deliveries": [{"id": r["id"], "platform": r["platform"], "topic": r["topic"],
                            "received_at": r["received_at"].isoformat(), "outcome": r["outcome"],
                            "body_kept": r["body"] is not None} for r in kept],
        }


def _event(r: Any) -> dict[str, Any]:
    record = json.loads(r["event"])
    return {
        "id": r["id"], "event_name": r["event_name"], "business_key": r["business_key"],
        "status": r["status"], "click_id": record.get("click_id"), "click_source": r["click_source"],
        "identifiers": json.loads(r["identifiers"]) if r["identifiers"] else {},
        "created_at": r["created_at"].isoformat(), "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None,
        "delivery_id": r["delivery_id"],
    }
