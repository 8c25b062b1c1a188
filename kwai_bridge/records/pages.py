"""Keyset pages, newest first: which ids come next, found through an index whatever the
filters, then their rows.

A page never skips rows: `id < cursor ORDER BY id DESC` is stable while new rows arrive
(they get higher ids and show on a new first page). A merchant's few stores are read one
index range each (`(store_id, …, id)`) and merged, so a small store among a million events
costs what its own rows cost; a long list of stores filters one scan instead.
"""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Sequence

from sqlalchemy import Select, select, text, union_all
from sqlalchemy.engine import Connection

from kwai_bridge.db import DeliveryOutcome, EventStatus, deliveries, event_identifiers, events
from kwai_bridge.outbox import delivery_row, event_row

MAX_LIMIT = 500
#: Up to this many stores, each is read through its own index range and the ranges merged.
PER_STORE_RANGES = 32


class BadQuery(ValueError):
    """A page asked for with a limit, cursor or filter that cannot be used."""

    status_code = 400


def encode_cursor(last_id: int) -> str:
    """The opaque cursor of the page after the row `last_id`."""
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQuery(f"cursor {cursor!r} is not one this service gave") from None
    if not text.isdigit() or int(text) <= 0:
        raise BadQuery(f"cursor {cursor!r} is not one this service gave")
    return int(text)


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def check_choice(value: str | None, allowed, what: str) -> None:
    if value is not None and value not in {str(a) for a in allowed}:
        raise BadQuery(f"{what} must be one of {', '.join(str(a) for a in allowed)}, not {value!r}")


def _newest(conn: Connection, id_column, store_column, conditions: list, *, stores: Sequence[str] | None,
            before: int | None, limit: int) -> list[int]:
    """Up to `limit` ids matching `conditions`, newest first, below `before`."""
    if stores is not None and not stores:
        return []
    where = list(conditions)
    if before is not None:
        where.append(id_column < before)

    def newest(*extra) -> Select:
        return select(id_column).where(*where, *extra).order_by(id_column.desc()).limit(limit)

    if stores is None:
        stmt = newest()
    elif len(stores) == 1:
        stmt = newest(store_column == stores[0])
    elif len(stores) <= PER_STORE_RANGES:
        ranges = union_all(*(select(newest(store_column == s).subquery().c[0]) for s in sorted(set(stores))))
        merged = ranges.subquery()
        stmt = select(merged.c[0]).order_by(merged.c[0].desc()).limit(limit)
    else:
        stmt = newest(store_column.in_(sorted(set(stores))))
    return list(conn.execute(stmt).scalars())


def _order_condition(conn: Connection, order: str, stores: Sequence[str] | None):
    """Events carrying the platform's order id `order` (one index probe per store)."""
    ei = event_identifiers.c
    if stores is None:
        stores = _store_ids(conn)
    found = select(ei.event_id).where(ei.store_id.in_(sorted(set(stores))), ei.kind == "order_id",
                                      ei.value == order)
    return events.c.id.in_(list(conn.execute(found).scalars()))


#: Every store id the identifier index holds, found by skipping through the index: one
#: probe per store rather than a scan of every row.
_STORE_IDS = text("""
    WITH RECURSIVE s(store_id) AS (
        SELECT min(store_id) FROM event_identifiers
        UNION ALL
        SELECT (SELECT min(i.store_id) FROM event_identifiers i WHERE i.store_id > s.store_id)
        FROM s WHERE s.store_id IS NOT NULL
    )
    SELECT store_id FROM s WHERE store_id IS NOT NULL
""")


def _store_ids(conn: Connection) -> list[str]:
    return list(conn.execute(_STORE_IDS).scalars())


def event_page(conn: Connection, *, stores: Sequence[str] | None, status: str | None, event_name: str | None,
               order: str | None, since: datetime | None, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """(rows of one page of events, the next page's cursor or None)."""
    check_limit(limit)
    check_choice(status, EventStatus, "status")
    before = decode_cursor(cursor)
    if since is not None and since.tzinfo is None:
        raise BadQuery("since must carry a time zone")
    e = events.c
    conditions = []
    if status is not None:
        conditions.append(e.status == status)
    if event_name is not None:
        conditions.append(e.event_name == event_name)
    if since is not None:
        conditions.append(e.created_at >= since)
    if order is not None:
        conditions.append(_order_condition(conn, order, stores))
    ids = _newest(conn, e.id, e.store_id, conditions, stores=stores, before=before, limit=limit + 1)
    rows = _rows(conn, events, ids[:limit], event_row)
    return rows, encode_cursor(ids[limit - 1]) if len(ids) > limit else None


def delivery_page(conn: Connection, *, stores: Sequence[str] | None, outcome: str | None, cursor: str | None,
                  limit: int) -> tuple[list, str | None]:
    """(rows of one page of deliveries, without their bodies; the next page's cursor or None)."""
    check_limit(limit)
    check_choice(outcome, DeliveryOutcome, "outcome")
    before = decode_cursor(cursor)
    d = deliveries.c
    conditions = [d.outcome == outcome] if outcome is not None else []
    ids = _newest(conn, d.id, d.store_id, conditions, stores=stores, before=before, limit=limit + 1)
    rows = _rows(conn, deliveries, ids[:limit], None)
    return rows, encode_cursor(ids[limit - 1]) if len(ids) > limit else None


def _rows(conn: Connection, table, ids: list[int], build) -> list:
    if not ids:
        return []
    columns = [c for c in table.c if c.name != "body"] if build is None else list(table.c)
    found = {m["id"]: m for m in conn.execute(select(*columns).where(table.c.id.in_(ids))).mappings()}
    # A row deleted between the two reads (pruned) is left out.
    return [build(found[i]) if build else found[i] for i in ids if i in found]


__all__ = ["MAX_LIMIT", "BadQuery", "check_limit", "decode_cursor", "delivery_page", "encode_cursor", "event_page"]
