"""What the outbox holds about one customer, for privacy requests.

Deliveries do not record their customer: they are reached through the events they
produced (`events.delivery_id`), and events through their identifiers (order ids,
customer id, e-mail and phone hashes), following cart and checkout tokens found on the
customer's own events. A delivery that produced no event is found by searching the kept
raw bodies. Functions over a connection, so that a request and the click store's part
of it run in one transaction.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from sqlalchemy import LargeBinary, bindparam, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection

from kwai_bridge.db import any_pair, deliveries, event_identifiers, events

Pair = tuple[str, str]
#: Rounds of following identifiers from the customer's events to the events sharing them.
_ROUNDS = 4


def customer_events(conn: Connection, store_id: str, pairs: set[Pair]) -> tuple[set[int], set[Pair]]:
    """The customer's event ids and every identifier found on them (with `pairs`)."""
    ei = event_identifiers.c
    known, ids = set(pairs), set()
    for _ in range(_ROUNDS):
        if not known:
            break
        found = set(conn.execute(select(ei.event_id).where(
            ei.store_id == store_id, any_pair(ei.kind, ei.value, known))).scalars())
        if found <= ids:
            break
        ids |= found
        more = {(row.kind, row.value) for row in conn.execute(
            select(ei.kind, ei.value).where(ei.event_id.in_(sorted(ids))))}
        known |= more
    return ids, known


def redact_events(conn: Connection, event_ids: set[int]) -> int:
    """Null the bodies of the deliveries that produced these events and drop the events'
    identifiers (the events stay, for counting); return how many bodies were nulled."""
    if not event_ids:
        return 0
    e, d, ids = events.c, deliveries.c, sorted(event_ids)
    produced = select(e.delivery_id).where(e.id.in_(ids), e.delivery_id.is_not(None))
    bodies = conn.execute(update(deliveries).where(
        d.id.in_(produced), d.body.is_not(None)).values(body=None)).rowcount
    conn.execute(update(events).where(e.id.in_(ids)).values(identifiers=None))
    conn.execute(delete(event_identifiers).where(event_identifiers.c.event_id.in_(ids)))
    return bodies


def null_bodies_mentioning(conn: Connection, store_id: str, needles: Iterable[bytes]) -> int:
    """Null the kept bodies of a store's deliveries that contain any of `needles`; return how many."""
    d = deliveries.c
    found = []
    for i, needle in enumerate(sorted(needles)):
        name = f"needle_{i}"
        if conn.dialect.name == "postgresql":
            found.append(text(f"position(:{name} in deliveries.body) > 0")
                         .bindparams(bindparam(name, needle, type_=LargeBinary)))
        else:
            found.append(func.instr(d.body, bindparam(name, needle, type_=LargeBinary)) > 0)
    if not found:
        return 0
    return conn.execute(update(deliveries).where(
        d.store_id == store_id, d.body.is_not(None), or_(*found)).values(body=None)).rowcount


def redact_store(conn: Connection, store_id: str) -> tuple[int, int]:
    """Null every kept body and drop every event's identifiers of a store; return
    (events changed, bodies nulled)."""
    e, d = events.c, deliveries.c
    bodies = conn.execute(update(deliveries).where(
        d.store_id == store_id, d.body.is_not(None)).values(body=None)).rowcount
    touched = conn.execute(update(events).where(
        e.store_id == store_id, e.identifiers.is_not(None)).values(identifiers=None)).rowcount
    conn.execute(delete(event_identifiers).where(event_identifiers.c.store_id == store_id))
    return touched, bodies


def customer_rows(conn: Connection, event_ids: set[int]) -> tuple[Sequence[Any], Sequence[Any]]:
    """The rows of these events and of the deliveries that produced them, by id."""
    e, d = events.c, deliveries.c
    rows = conn.execute(select(events).where(e.id.in_(sorted(event_ids))).order_by(e.id)).mappings().all()
    delivery_ids = sorted({r["delivery_id"] for r in rows if r["delivery_id"] is not None})
    kept = conn.execute(select(deliveries).where(d.id.in_(delivery_ids)).order_by(d.id)).mappings().all()
    return rows, kept
