"""Click-id attribution: the click store (the one module that runs SQL on `clicks`),
the resolver the pipeline calls, late binding and the attribution report.

Evidence is used newest first: a click id our snippet or plugin put on the cart or order
(the adapters already found it: `attribute`, `order_meta`), then the click store by order
id, checkout token, cart token, customer id, hashed e-mail, hashed phone
(`click_store:<identifier>`), and only then a click id read from a landing URL
(`landing_url`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine

import adapters
from adapters.values import Conversion
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import EventStatus, any_pair, chunked, clicks, reading, upsert_insert
from kwai_bridge.outbox import Outbox

log = logging.getLogger(__name__)

#: Identifiers the click store is searched by, in order of precedence.
IDENTIFIERS: tuple[str, ...] = (
    "order_id", "checkout_token", "cart_token", "customer_id", "email_sha256", "phone_sha256",
)
#: Sources the adapters found on the cart or order itself: stronger than the click store.
OWN_SOURCES = frozenset({"attribute", "order_meta"})
STORE_SOURCE = "click_store:"


@dataclass(frozen=True)
class Click:
    """The latest click known for one identifier of a store."""

    kind: str
    value: str
    click_id: str
    clicked_at: datetime
    order_key: str | None = None


def order_key_matches(platform: str, click_key: str | None, event_key: str | None) -> bool:
    """Whether a click given by order id may bind an order with `event_key`.

    Where order ids are guessable (a small counter on WooCommerce), the click must bring
    the order's key; a key, when given on any platform, must match.
    """
    if click_key is None and not adapters.REGISTRY[platform].ORDER_ID_NEEDS_KEY:
        return True
    return bool(click_key) and click_key == event_key


class ClickStore:
    """Identifier -> latest click id per store, on the `clicks` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = upsert_insert(engine.dialect)

    def record(self, store_id: str, *, click_id: str, identifiers: Mapping[str, str],
               clicked_at: datetime, order_key: str | None = None, now: datetime) -> int:
        """Remember `click_id` for each identifier unless a newer click is already kept;
        return how many entries changed. `order_key` goes with the `order_id` entry."""
        changed = 0
        with self.engine.begin() as conn:
            for kind, value in identifiers.items():
                stmt = self._insert(clicks).values(
                    store_id=store_id, kind=kind, value=value, click_id=click_id, clicked_at=clicked_at,
                    order_key=order_key if kind == "order_id" else None, updated_at=now)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["store_id", "kind", "value"],
                    set_={"click_id": stmt.excluded.click_id, "clicked_at": stmt.excluded.clicked_at,
                          "order_key": stmt.excluded.order_key, "updated_at": stmt.excluded.updated_at},
                    # an older click arriving late does not overwrite a newer one
                    where=clicks.c.clicked_at <= stmt.excluded.clicked_at,
                ).returning(clicks.c.kind)
                changed += conn.execute(stmt).first() is not None
        return changed

    def lookup(self, store_id: str, identifiers: Mapping[str, str], *, since: datetime) -> dict[str, Click]:
        """The clicks kept for any of `identifiers`, clicked at or after `since`, by kind."""
        pairs = [(k, v) for k, v in identifiers.items() if k in IDENTIFIERS and v]
        if not pairs:
            return {}
        c = clicks.c
        stmt = select(clicks).where(c.store_id == store_id, c.clicked_at >= since, any_pair(c.kind, c.value, pairs))
        with reading(self.engine) as conn:
            return {m["kind"]: _click(m) for m in conn.execute(stmt).mappings()}

    def prune(self, *, now: datetime, windows: Mapping[str, int], default_days: int = 30) -> int:
        """Delete entries older than their store's window (`default_days` for other stores)."""
        c = clicks.c
        done = 0
        with self.engine.begin() as conn:
            for store_id, days in windows.items():
                done += conn.execute(delete(clicks).where(
                    c.store_id == store_id, c.clicked_at < now - timedelta(days=days))).rowcount
            others = c.store_id.not_in(list(windows)) if windows else True
            done += conn.execute(delete(clicks).where(
                others, c.clicked_at < now - timedelta(days=default_days))).rowcount
        return done


def clicks_of(conn: Connection, store_id: str, pairs: set[tuple[str, str]]) -> list[Mapping[str, Any]]:
    """The click-store rows kept for any of `pairs` (kind, value), in a caller's transaction."""
    c = clicks.c
    found = [row for chunk in chunked(sorted(pairs))
             for row in conn.execute(select(clicks).where(c.store_id == store_id, any_pair(c.kind, c.value, chunk)))
             .mappings()]
    return sorted(found, key=lambda row: (row["kind"], row["value"]))


def forget_clicks(conn: Connection, store_id: str, pairs: set[tuple[str, str]] | None = None) -> int:
    """Delete the click-store rows kept for any of `pairs`, or with None every row of the
    store, in a caller's transaction; return how many."""
    c = clicks.c
    if pairs is None:
        return conn.execute(delete(clicks).where(c.store_id == store_id)).rowcount
    return sum(conn.execute(delete(clicks).where(c.store_id == store_id, any_pair(c.kind, c.value, chunk))).rowcount
               for chunk in chunked(sorted(pairs)))


def _click(m: Mapping[str, Any]) -> Click:
    return Click(kind=m["kind"], value=m["value"], click_id=m["click_id"],
                 clicked_at=m["clicked_at"], order_key=m["order_key"])


def best_click(platform: str, found: Mapping[str, Click], identifiers: Mapping[str, str]) -> Click | None:
    """The click of the first identifier in precedence order that may bind the event."""
    for kind in IDENTIFIERS:
        click = found.get(kind)
        if click is None or click.value != identifiers.get(kind):
            continue
        if kind == "order_id" and not order_key_matches(platform, click.order_key, identifiers.get("order_key")):
            continue  # a mismatched order key binds nothing
        return click
    return None


class Attribution:
    """The pipeline's resolver and the late binding done when a click arrives."""

    def __init__(self, clicks_store: ClickStore, outbox: Outbox) -> None:
        self.clicks = clicks_store
        self.outbox = outbox

    def resolve(self, store: StoreConfig, conversions: Sequence[Conversion], now: datetime) -> list[Conversion]:
        """Fill click ids from the click store where no stronger evidence has one."""
        since = now - timedelta(days=store.click_window_days)
        resolved = []
        for conversion in conversions:
            if conversion.skip_reason or conversion.click_source in OWN_SOURCES:
                resolved.append(conversion)
                continue
            found = self.clicks.lookup(store.id, conversion.identifiers, since=since)
            click = best_click(store.platform, found, conversion.identifiers)
            if click is not None:
                conversion = replace(conversion, event=conversion.event.with_click_id(click.click_id),
                                     click_source=STORE_SOURCE + click.kind)
            resolved.append(conversion)
        return resolved

    def record_click(self, store: StoreConfig, *, click_id: str, identifiers: Mapping[str, str],
                     order_key: str | None, now: datetime) -> int:
        """Store a click reported for `identifiers` and bind the store's unattributed events
        received within its late-binding window; return how many events were bound."""
        self.clicks.record(store.id, click_id=click_id, identifiers=identifiers, clicked_at=now,
                           order_key=order_key, now=now)
        if store.late_binding_hours <= 0:
            return 0
        since = now - timedelta(hours=store.late_binding_hours)
        click = {kind: Click(kind, value, click_id, now, order_key if kind == "order_id" else None)
                 for kind, value in identifiers.items()}
        by_kind: dict[str, list[int]] = {}
        # A race remains: a webhook converted while this click is being stored may miss
        # both; its event then waits for the next click on one of its identifiers.
        for event_id, carried in self.outbox.unattributed_matching(store.id, identifiers, since=since):
            chosen = best_click(store.platform, click, carried)
            if chosen is not None:
                by_kind.setdefault(chosen.kind, []).append(event_id)
        bound = sum(self.outbox.attach_click(store.id, event_ids=ids, click_id=click_id,
                                             source=STORE_SOURCE + kind, now=now)
                    for kind, ids in by_kind.items())
        if bound:
            log.info("store %s: a click bound %d waiting event(s)", store.id, bound)
        return bound


def report(outbox: Outbox, *, store_id: str | None = None, since: datetime) -> dict[str, dict[str, Any]]:
    """Per event name: events by the source of their click id, and those unattributed.

    Events created at or after `since`; skipped events (never to be sent) are left out.
    """
    result: dict[str, dict[str, Any]] = {}
    for name, status, source, count in outbox.source_counts(store_id=store_id, since=since):
        entry = result.setdefault(name, {"sources": {}, "unattributed": 0})
        if status == EventStatus.UNATTRIBUTED or source is None:
            entry["unattributed"] += count
        else:
            entry["sources"][source] = entry["sources"].get(source, 0) + count
    return {name: result[name] for name in sorted(result)}
