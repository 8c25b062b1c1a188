"""Click-id attribution: the click store (the one module that runs SQL on `clicks`),
the resolver the pipeline calls, late binding and the attribution report.

Evidence is ranked by how new it is. A click id our snippet or plugin put on the cart or
order (the adapters already found it: `attribute`, `order_meta`) is what the shopper's own
browser carried when the order was placed, the newest click that can have led to it: it
comes first. Then the click store: of the clicks kept for the event's order id, checkout
token, cart token, customer id, hashed e-mail or hashed phone (`click_store:<identifier>`),
the one stored last wins, whichever identifier found it (ties go in that order). A click id
read from a landing URL (`landing_url`) carries no time and comes last: it is the visit's
first page, and the snippet, where installed, stored that click and any newer one since.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, Engine

from adapters.later import day_window_skip
from adapters.values import Conversion
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import EventStatus, any_pair, chunked, clicks, reading, upsert_insert
from kwai_bridge.outbox import Outbox
from kwai_bridge.ratelimit import FixedWindows, Limit

log = logging.getLogger(__name__)

#: Identifiers the click store is searched by; the order breaks ties between clicks stored
#: at the same moment.
IDENTIFIERS: tuple[str, ...] = (
    "order_id", "checkout_token", "cart_token", "customer_id", "email_sha256", "phone_sha256",
)
#: Sources the adapters found on the cart or order itself: stronger than the click store.
OWN_SOURCES = frozenset({"attribute", "order_meta"})
STORE_SOURCE = "click_store:"
#: The counter of a store's click requests (`rate_windows.scope`).
STORE_SCOPE = "clicks:store"
#: Eviction looks at most this often (in requests counted for the store): the look walks
#: the store's entries on the index, and between looks at most this many requests of at
#: most len(IDENTIFIERS) entries each can be added.
EVICTION_EVERY = 500


@dataclass(frozen=True)
class ClickQuota:
    """What one click request may take of a store: `per_window` requests a window for
    the store (counted with `more`, e.g. the client's address, in one statement), and at
    most `max_clicks` entries kept, the oldest evicted first."""

    per_window: int
    max_clicks: int
    more: tuple[Limit, ...] = ()

    @property
    def evict_every(self) -> int:
        """Requests between two looks at the store's entry count."""
        return max(1, min(EVICTION_EVERY, self.max_clicks // (2 * len(IDENTIFIERS))))

    @property
    def keep(self) -> int:
        """How many entries a look leaves, so that until the next look the store never
        holds more than `max_clicks`."""
        return self.max_clicks - len(IDENTIFIERS) * (self.evict_every - 1)


@dataclass(frozen=True)
class Click:
    """The latest click known for one identifier of a store."""

    kind: str
    value: str
    click_id: str
    clicked_at: datetime
    order_key: str | None = None


def order_key_matches(click_key: str | None, event_key: str | None) -> bool:
    """Whether a click given by order id may bind an order with `event_key`: only with
    the order's own key (WooCommerce's order key, Shopify's order token), since order ids
    are guessable (a counter on WooCommerce, public numbers elsewhere)."""
    return bool(click_key) and bool(event_key) and hmac.compare_digest(click_key.encode(), event_key.encode())


class ClickStore:
    """Identifier -> latest click id per store, on the `clicks` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.windows = FixedWindows(engine.dialect)
        self._insert = upsert_insert(engine.dialect)

    def record(self, store_id: str, *, click_id: str, identifiers: Mapping[str, str],
               clicked_at: datetime, order_key: str | None = None, now: datetime,
               quota: ClickQuota | None = None) -> int:
        """Remember `click_id` for each identifier unless a newer click is already kept;
        return how many entries changed. `order_key` goes with the `order_id` entry.

        With a `quota` the request is counted first, in the same transaction, and
        RateLimited (nothing stored, nothing counted) when over a limit; the store's
        oldest entries are evicted beyond `quota.max_clicks`. The store's counter row
        orders its requests (see FixedWindows.take), so that cap holds exactly.
        """
        if not set(identifiers) <= set(IDENTIFIERS):  # also what bounds the entries a request adds
            raise ValueError(f"identifiers must be among {', '.join(IDENTIFIERS)}")
        changed = 0
        with self.engine.begin() as conn:
            counted = None
            if quota is not None:
                store = Limit(STORE_SCOPE, store_id, quota.per_window)
                counted = self.windows.take(conn, [store, *quota.more], now=now)[store]
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
            # The first request of each window looks too: the count restarts there.
            if quota is not None and (counted - 1) % quota.evict_every == 0:
                evicted = self._evict(conn, store_id, keep=quota.keep)
                if evicted:
                    log.info("store %s: %d oldest click(s) evicted (max_clicks %d)",
                             store_id, evicted, quota.max_clicks)
        return changed

    @staticmethod
    def _evict(conn: Connection, store_id: str, *, keep: int) -> int:
        """Delete the store's entries but the newest `keep` (and those clicked at the same
        moment as the oldest of them: it only evicts more); return how many."""
        c = clicks.c
        boundary = (select(c.clicked_at).where(c.store_id == store_id)
                    .order_by(c.clicked_at.desc()).limit(1).offset(keep).scalar_subquery())
        return conn.execute(delete(clicks).where(c.store_id == store_id, c.clicked_at <= boundary)).rowcount

    def count(self, store_id: str) -> int:
        """How many entries the store holds."""
        with reading(self.engine) as conn:
            return conn.execute(select(func.count()).select_from(clicks).where(clicks.c.store_id == store_id)).scalar()

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
        """Delete entries older than their store's window (`default_days` for other stores),
        and the request counters of windows that have passed."""
        c = clicks.c
        done = 0
        with self.engine.begin() as conn:
            for store_id, days in windows.items():
                done += conn.execute(delete(clicks).where(
                    c.store_id == store_id, c.clicked_at < now - timedelta(days=days))).rowcount
            others = c.store_id.not_in(list(windows)) if windows else True
            done += conn.execute(delete(clicks).where(
                others, c.clicked_at < now - timedelta(days=default_days))).rowcount
            self.windows.prune(conn, now=now)
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


def best_click(found: Mapping[str, Click], identifiers: Mapping[str, str]) -> Click | None:
    """The newest of the clicks that may bind the event (Kwai: a newer click replaces an
    older one); among clicks stored at the same moment, the first identifier in
    precedence order."""
    binding = []
    for rank, kind in enumerate(IDENTIFIERS):
        click = found.get(kind)
        if click is None or click.value != identifiers.get(kind):
            continue
        if kind == "order_id" and not order_key_matches(click.order_key, identifiers.get("order_key")):
            continue  # a mismatched order key binds nothing
        binding.append((click.clicked_at, -rank, click))
    return max(binding, key=lambda item: item[:2])[2] if binding else None


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
            if conversion.within_days is not None and not conversion.skip_reason:
                resolved.append(self._day_window(store, conversion, since))
                continue
            if conversion.skip_reason or conversion.click_source in OWN_SOURCES:
                resolved.append(conversion)
                continue
            found = self.clicks.lookup(store.id, conversion.identifiers, since=since)
            click = best_click(found, conversion.identifiers)
            if click is not None:
                conversion = replace(conversion, event=conversion.event.with_click_id(click.click_id),
                                     click_source=STORE_SOURCE + click.kind)
            resolved.append(conversion)
        return resolved

    def _day_window(self, store: StoreConfig, conversion: Conversion, since: datetime) -> Conversion:
        """An N-day purchase (adapters.later), sent only when its click is one the click
        store holds (so its time is known) and was stored at most N days before the
        payment; else kept as skipped, the reason recorded."""
        click = best_click(self.clicks.lookup(store.id, conversion.identifiers, since=since), conversion.identifiers)
        own = conversion.click_source in OWN_SOURCES and conversion.event.click_id
        if click is not None and own and click.click_id != conversion.event.click_id:
            click = None  # the order carries another click: its time is unknown
        if click is not None and not own:
            conversion = replace(conversion, event=conversion.event.with_click_id(click.click_id),
                                 click_source=STORE_SOURCE + click.kind)
        skip = day_window_skip(conversion, click.clicked_at if click is not None else None)
        return replace(conversion, skip_reason=skip) if skip else conversion

    def record_click(self, store: StoreConfig, *, click_id: str, identifiers: Mapping[str, str],
                     order_key: str | None, now: datetime, quota: ClickQuota | None = None) -> int:
        """Store a click reported for `identifiers` (held to `quota`: RateLimited, see
        ClickStore.record) and bind the store's unattributed events received within its
        late-binding window; return how many events were bound."""
        self.clicks.record(store.id, click_id=click_id, identifiers=identifiers, clicked_at=now,
                           order_key=order_key, now=now, quota=quota)
        if store.late_binding_hours <= 0:
            return 0
        since = now - timedelta(hours=store.late_binding_hours)
        click = {kind: Click(kind, value, click_id, now, order_key if kind == "order_id" else None)
                 for kind, value in identifiers.items()}
        by_kind: dict[str, list[int]] = {}
        # A race remains: a webhook converted while this click is being stored may miss
        # both; its event then waits for the next click on one of its identifiers.
        for event_id, carried in self.outbox.unattributed_matching(store.id, identifiers, since=since):
            chosen = best_click(click, carried)
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
