"""The console's figures: every store's state at a glance (problems first) and a store's
last 30 days by day.

Built to stay fast with a thousand stores and a million events: a store's problems are
a handful of index probes each (one statement for all stores, correlated subqueries on
`(store_id, status, id)` and `(store_id, id)`); time windows become id ranges, found by a
binary search on the primary key (ids grow with `created_at`); and the figures that read
rows (purchases, attribution) are computed only for the stores on the page shown.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from sqlalchemy import and_, func, select, union_all
from sqlalchemy.engine import Connection

from adapters.convert import PURCHASE
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import EventStatus, deliveries, events, stores as stores_table

#: A pending event older than this is a backlog.
BACKLOG_AFTER = timedelta(minutes=15)
#: Problems in the order the overview lists them (worst first); a store without any is "ok".
KINDS = ("held", "dead", "quiet", "backlog")


@dataclass(frozen=True)
class StoreState:
    """One row of the overview."""

    store: StoreConfig
    held: int = 0
    held_error: str | None = None
    dead: int = 0
    oldest_pending_at: datetime | None = None
    last_delivery_at: datetime | None = None
    problems: tuple[tuple[str, str], ...] = ()  # (kind, sentence)
    figures: dict = field(default_factory=dict, hash=False)

    @property
    def rank(self) -> int:
        return min((KINDS.index(kind) for kind, _ in self.problems), default=len(KINDS))


def first_id_since(conn: Connection, since: datetime) -> int | None:
    """The lowest event id created at or after `since` (None: none), by a binary search on
    the primary key: ids are handed out as events are created."""
    e = events.c
    low, high = conn.execute(select(func.min(e.id), func.max(e.id))).one()
    if low is None:
        return None

    def first_from(i: int):
        return conn.execute(select(e.id, e.created_at).where(e.id >= i).order_by(e.id).limit(1)).first()

    if first_from(high).created_at < since:
        return None
    while low < high:  # the lowest i whose first event from i on is recent enough
        middle = (low + high) // 2
        if first_from(middle).created_at >= since:
            high = middle
        else:
            low = middle + 1
    return first_from(low).id


def _problems(state: StoreState, now: datetime) -> tuple[tuple[str, str], ...]:
    found = []
    if state.held:
        why = "token refused" if "10006" in (state.held_error or "") or "token" in (state.held_error or "") else \
            (state.held_error or "see its events")
        found.append(("held", f"held: {why} ({state.held} event{'s' if state.held != 1 else ''})"))
    if state.dead:
        found.append(("dead", f"{state.dead} dead event{'s' if state.dead != 1 else ''}"))
    quiet = timedelta(hours=state.store.quiet_hours)
    if state.last_delivery_at is None:
        found.append(("quiet", "no webhook received yet"))
    elif now - state.last_delivery_at > quiet:
        hours = int((now - state.last_delivery_at).total_seconds() // 3600)
        found.append(("quiet", f"no webhook in {hours} hours"))
    if state.oldest_pending_at is not None and now - state.oldest_pending_at > BACKLOG_AFTER:
        minutes = int((now - state.oldest_pending_at).total_seconds() // 60)
        found.append(("backlog", f"backlog: an event waiting for {minutes} min"))
    return tuple(found)


def states(conn: Connection, configs: Sequence[StoreConfig], *, now: datetime) -> list[StoreState]:
    """Every store's problems, worst first, then by id; one statement for all of them."""
    if not configs:
        return []
    s = stores_table.c
    inner_e, inner_d = events.alias("ie").c, deliveries.alias("idl").c
    e, d = events.c, deliveries.c

    def scalar(query):
        return query.correlate(stores_table).scalar_subquery()

    def count(status: str):
        return scalar(select(func.count()).select_from(events).where(e.store_id == s.id, e.status == status))

    def row_of(column, table_c, aggregate, status: str | None = None):
        """`column` of the row whose id is the min or max of the store's (of `status`)."""
        where = [inner_e.store_id == s.id] if table_c is e else [inner_d.store_id == s.id]
        ident = inner_e.id if table_c is e else inner_d.id
        if status is not None:
            where.append(inner_e.status == status)
        return scalar(select(column).where(table_c.id == scalar(select(aggregate(ident)).where(*where))))

    query = select(
        s.id, count(EventStatus.HELD).label("held"), count(EventStatus.DEAD).label("dead"),
        row_of(e.last_error, e, func.max, EventStatus.HELD).label("held_error"),
        row_of(e.created_at, e, func.min, EventStatus.PENDING).label("oldest_pending_at"),
        row_of(d.received_at, d, func.max).label("last_delivery_at"),
    )
    ids = [c.id for c in configs]
    if len(ids) <= 500:
        query = query.where(s.id.in_(ids))
    found = {row.id: row for row in conn.execute(query)}
    out = []
    for config in configs:
        row = found.get(config.id)
        state = StoreState(config) if row is None else StoreState(
            config, held=row.held, held_error=row.held_error, dead=row.dead,
            oldest_pending_at=row.oldest_pending_at, last_delivery_at=row.last_delivery_at)
        out.append(StoreState(**{**state.__dict__, "problems": _problems(state, now)}))
    return sorted(out, key=lambda st: (st.rank, st.store.id))


def purchase_figures(conn: Connection, store_ids: Sequence[str], *, now: datetime) -> dict[str, dict]:
    """Per store: purchases sent in the last 24 h and 7 days, and the share of the last 7
    days' purchases that carry a click id (as `attribution report` counts)."""
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    figures = {i: {"sent_24h": 0, "sent_7d": 0, "purchases_7d": 0, "attributed_7d": 0} for i in store_ids}
    start = first_id_since(conn, week)
    if not store_ids or start is None:
        return {i: {**f, "share_7d": None} for i, f in figures.items()}
    e = events.c
    # One index range per store on (store_id, id), read together: a filter on the list of
    # stores would walk every store's events of the week instead.
    rows = conn.execute(union_all(*(
        select(e.store_id, e.status, e.click_source, e.created_at).where(
            e.store_id == store_id, e.id >= start, e.event_name == PURCHASE, e.created_at >= week,
            e.status != EventStatus.SKIPPED) for store_id in store_ids)))
    for row in rows:
        f = figures[row.store_id]
        f["purchases_7d"] += 1
        if row.status != EventStatus.UNATTRIBUTED and row.click_source:
            f["attributed_7d"] += 1
        if row.status == EventStatus.SENT:
            f["sent_7d"] += 1
            f["sent_24h"] += row.created_at >= day
    for f in figures.values():
        f["share_7d"] = round(f["attributed_7d"] / f["purchases_7d"], 4) if f["purchases_7d"] else None
    return figures


def daily(conn: Connection, store_id: str, *, now: datetime, days: int = 30) -> list[dict]:
    """The store's last `days` days, oldest first: events created by status, and purchases
    with how many carry a click id."""
    first_day = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=now.tzinfo)
    out = {first_day + timedelta(days=n): {"statuses": {}, "purchases": 0, "attributed": 0} for n in range(days)}
    start = first_id_since(conn, since)
    if start is not None:
        e = events.c
        rows = conn.execute(select(e.status, e.event_name, e.click_source, e.created_at).where(
            and_(e.store_id == store_id, e.id >= start, e.created_at >= since)))
        for row in rows:
            bucket = out.get(row.created_at.date())
            if bucket is None:
                continue
            bucket["statuses"][row.status] = bucket["statuses"].get(row.status, 0) + 1
            if row.event_name == PURCHASE and row.status != EventStatus.SKIPPED:
                bucket["purchases"] += 1
                bucket["attributed"] += bool(row.status != EventStatus.UNATTRIBUTED and row.click_source)
    return [{"day": day, **values} for day, values in out.items()]


def delivery_body(conn: Connection, delivery_id: int) -> str | None:
    """A delivery's raw body while it is kept (None after retention removed it)."""
    body = conn.execute(select(deliveries.c.body).where(deliveries.c.id == delivery_id)).scalar()
    return None if body is None else bytes(body).decode("utf-8", "replace")


__all__ = ["BACKLOG_AFTER", "delivery_body", "KINDS", "StoreState", "daily", "first_id_since", "purchase_figures", "states"]
