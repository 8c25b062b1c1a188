"""Privacy requests: redaction of a customer or a whole shop, and the export that answers
a customer's data request.

What the outbox holds about a customer is found by `kwai_bridge.outbox.customers`
(through the events' identifiers, and the kept raw bodies for deliveries that produced
no event); the click store's part by `kwai_bridge.attribution`. Redaction nulls raw
bodies, drops events' identifiers (the events stay, for counting) and deletes
click-store entries, in one transaction.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy.engine import Engine

from adapters.values import PrivacyRequest
from kwai_bridge.attribution import clicks_of, forget_clicks
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import reading
from kwai_bridge.outbox import customers
from kwai_bridge.outbox.customers import Pair

log = logging.getLogger(__name__)

#: Identifier kinds that appear in clear in webhook bodies (hashes do not).
CLEAR_KINDS = frozenset({"customer_id", "order_id", "cart_token", "checkout_token"})


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


def _needles(known: set[Pair]) -> set[bytes]:
    # Ids and tokens appear in clear in the bodies (hashes do not). A short number may
    # also match another one: nulling too many bodies only costs reprocessing.
    return {value.encode() for kind, value in known if kind in CLEAR_KINDS and len(value) >= 3}


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
        with self.engine.begin() as conn:
            ids, known = customers.customer_events(conn, store_id, pairs)
            bodies = customers.redact_events(conn, ids)
            bodies += customers.null_bodies_mentioning(conn, store_id, _needles(known))
            removed = forget_clicks(conn, store_id, known)
        return Redacted(events=len(ids), bodies=bodies, clicks=removed)

    def redact_shop(self, store_id: str) -> Redacted:
        """Remove everything personal held for a store: bodies, identifiers, clicks."""
        with self.engine.begin() as conn:
            touched, bodies = customers.redact_store(conn, store_id)
            removed = forget_clicks(conn, store_id)
        return Redacted(events=touched, bodies=bodies, clicks=removed)

    def export(self, store_id: str, pairs: set[Pair]) -> dict[str, Any]:
        """What is held about the customer named by `pairs`, as JSON-ready data."""
        with reading(self.engine) as conn:
            ids, known = customers.customer_events(conn, store_id, pairs) if pairs else (set(), set())
            rows, kept = customers.customer_rows(conn, ids)
            held = clicks_of(conn, store_id, known)
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
