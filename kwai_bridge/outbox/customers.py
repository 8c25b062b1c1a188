"""What the outbox holds about one customer, for privacy requests.

Deliveries do not record their customer: they are reached through the events they
produced (`events.delivery_id`), and events through their identifiers (order ids,
customer id, e-mail and phone hashes), following cart and checkout tokens found on the
customer's own events. A delivery that produced no event is found by searching the kept
raw bodies. Functions over a connection, so that a request and the click store's part
of it run in one transaction.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from sqlalchemy import LargeBinary, bindparam, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection

from kwai_bridge.db import any_pair, chunked, deliveries, event_identifiers, events
from kwai_bridge.jsontext import compact

Pair = tuple[str, str]
#: Rounds of following identifiers from the customer's events to the events sharing them.
_ROUNDS = 4
#: Body searches per statement.
_NEEDLES = 200
#: How a stored record (compact JSON) holds a mapping id that is set.
_MAPPING_SET = '"mapping_id":"'


def customer_events(conn: Connection, store_id: str, pairs: set[Pair]) -> tuple[set[int], set[Pair]]:
    """The customer's event ids and every identifier found on them (with `pairs`).

    Each identifier is looked up once, in chunks (a request may name 20,000 orders, a
    customer have hundreds, each with several identifiers).
    """
    ei = event_identifiers.c
    known, ids, asked = set(pairs), set(), set()
    for _ in range(_ROUNDS):
        new = known - asked
        asked |= new
        found: set[int] = set()
        for chunk in chunked(sorted(new)):
            found.update(conn.execute(select(ei.event_id).where(
                ei.store_id == store_id, any_pair(ei.kind, ei.value, chunk))).scalars())
        found -= ids
        if not found:
            break
        ids |= found
        for chunk in chunked(sorted(found)):
            known.update((row.kind, row.value) for row in conn.execute(
                select(ei.kind, ei.value).where(ei.event_id.in_(chunk))))
    return ids, known


def redact_events(conn: Connection, event_ids: set[int]) -> int:
    """Null the bodies of the deliveries that produced these events and drop the events'
    identifiers (the events stay, for counting); return how many bodies were nulled."""
    e, d, bodies = events.c, deliveries.c, 0
    for ids in chunked(sorted(event_ids)):
        produced = select(e.delivery_id).where(e.id.in_(ids), e.delivery_id.is_not(None))
        bodies += conn.execute(update(deliveries).where(
            d.id.in_(produced), d.body.is_not(None)).values(body=None)).rowcount
        conn.execute(update(events).where(e.id.in_(ids)).values(identifiers=None))
        conn.execute(delete(event_identifiers).where(event_identifiers.c.event_id.in_(ids)))
        _forget_mapping_ids(conn, e.id.in_(ids))
    return bodies


def _forget_mapping_ids(conn: Connection, where: Any) -> None:
    """Blank the mapping id (one of the customer's identifiers, for a store that sends one)
    in the records of the events `where` selects, so that it is neither kept nor sent."""
    e = events.c
    found = select(e.id, e.event).where(where, e.event.contains(_MAPPING_SET, autoescape=True))
    for row in conn.execute(found).all():
        record = json.loads(row.event)
        record["mapping_id"] = None
        conn.execute(update(events).where(e.id == row.id).values(event=compact(record)))


def null_bodies_mentioning(conn: Connection, store_id: str, needles: Iterable[bytes]) -> int:
    """Null the kept bodies of a store's deliveries that contain any of `needles`; return how many."""
    d = deliveries.c
    nulled = 0
    # An OR of searches per statement, a few hundred at a time: SQLite's expression tree
    # grows one level per term. Each statement scans the store's kept bodies (a week's).
    for chunk in chunked(sorted(needles), _NEEDLES):
        found = []
        for i, needle in enumerate(chunk):
            name = f"needle_{i}"
            if conn.dialect.name == "postgresql":
                found.append(text(f"position(:{name} in deliveries.body) > 0")
                             .bindparams(bindparam(name, needle, type_=LargeBinary)))
            else:
                found.append(func.instr(d.body, bindparam(name, needle, type_=LargeBinary)) > 0)
        nulled += conn.execute(update(deliveries).where(
            d.store_id == store_id, d.body.is_not(None), or_(*found)).values(body=None)).rowcount
    return nulled


def redact_store(conn: Connection, store_id: str) -> tuple[int, int]:
    """Null every kept body and drop every event's identifiers of a store; return
    (events changed, bodies nulled)."""
    e, d = events.c, deliveries.c
    bodies = conn.execute(update(deliveries).where(
        d.store_id == store_id, d.body.is_not(None)).values(body=None)).rowcount
    touched = conn.execute(update(events).where(
        e.store_id == store_id, e.identifiers.is_not(None)).values(identifiers=None)).rowcount
    conn.execute(delete(event_identifiers).where(event_identifiers.c.store_id == store_id))
    _forget_mapping_ids(conn, e.store_id == store_id)
    return touched, bodies


def customer_rows(conn: Connection, event_ids: set[int]) -> tuple[Sequence[Any], Sequence[Any]]:
    """The rows of these events and of the deliveries that produced them, by id."""
    e, d = events.c, deliveries.c
    rows = [row for ids in chunked(sorted(event_ids))
            for row in conn.execute(select(events).where(e.id.in_(ids)).order_by(e.id)).mappings()]
    delivery_ids = sorted({r["delivery_id"] for r in rows if r["delivery_id"] is not None})
    kept = [row for ids in chunked(delivery_ids)
            for row in conn.execute(select(deliveries).where(d.id.in_(ids)).order_by(d.id)).mappings()]
    return rows, kept
