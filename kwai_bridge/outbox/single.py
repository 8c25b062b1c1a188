"""PostgreSQL: a webhook's delivery, events and identifiers stored by one statement.

On PostgreSQL each statement is a round trip, and a webhook's transaction took six
(BEGIN, the delivery, its events, their identifiers, COMMIT, and the pool's ping) where
a receiver that only keeps the body takes one. Here the three inserts are one INSERT
with data-modifying CTEs, run in autocommit: one round trip, one commit (flushed to the
WAL before it returns, as every commit), and all of it or nothing, as before:

- the delivery row, or none when its key or body is known (a duplicate);
- the events, each joined to the delivery just inserted (so none for a duplicate),
  skipped when the store has that business key already;
- the identifiers of the events that were inserted.

The statement's text depends on the number of events and of identifiers of each; each
shape is built once. Conversions with a high-water mark (carts) and duplicates whose
body still owes events take the general path (kwai_bridge.outbox.accept). The worker
settles a received delivery with the same statement, an UPDATE of the delivery (only
while it is still received) in place of its INSERT (`settlement`), a batch's statements
sent together in its transaction (`sent_together`).

Each webhook's statement runs at once on its own pooled connection (`run_alone`):
PostgreSQL flushes the WAL of commits that meet once for all of them, and a webhook
does not wait for another's (kwai_bridge.outbox.commits says what queueing them cost).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy.engine import Engine

from adapters.values import Conversion
from kwai_bridge.db import DeliveryOutcome, autocommit_cursor, deliveries, event_identifiers, events

#: Columns written, in the order of the statement (the event's delivery id comes last, from the CTE).
DELIVERY_COLUMNS = ("store_id", "platform", "topic", "delivery_key", "received_at", "outcome", "error", "body",
                    "headers", "body_sha256")
EVENT_COLUMNS = ("store_id", "platform", "business_key", "event_name", "status", "event", "click_source",
                 "identifiers", "skip_reason", "value_note", "click_note", "attempts", "next_attempt_at",
                 "created_at", "updated_at")
IDENTIFIER_COLUMNS = ("store_id", "kind", "value")

Rows = Sequence[tuple[Conversion, Mapping[str, Any], Sequence[Mapping[str, Any]]]]
#: What the statement's first part does with the delivery: store it, or settle one received.
_INSERT, _SETTLE = "insert", "settle"


@dataclass(frozen=True)
class Statement:
    """A statement to run and how to read its result off the cursor that ran it."""

    sql: str
    params: Sequence[Any]
    read: Callable[[Any], Any]


def run_alone(engine: Engine, statement: Statement) -> Any:
    """`statement` in autocommit on one of the pool's connections: one round trip, its
    own commit; its result."""
    with autocommit_cursor(engine) as cursor:
        cursor.execute(statement.sql, statement.params)
        return statement.read(cursor)


def sent_together(connection, statements: Sequence[Statement]) -> list:
    """Statements run on `connection` (a driver connection inside a transaction) in
    pipeline mode: sent at once, their results read back in order."""
    cursors = []
    try:
        with connection.pipeline():
            for statement in statements:
                cursors.append(connection.cursor())
                cursors[-1].execute(statement.sql, statement.params)
        return [statement.read(cursor) for statement, cursor in zip(statements, cursors)]
    finally:
        for cursor in cursors:
            cursor.close()


class OneStatementAccept:
    """The statement for each shape of webhook, and running it."""

    def __init__(self, dialect) -> None:
        # Values in a VALUES list have no column to take their type from: each is cast.
        self._event_types = [events.c[name].type.compile(dialect=dialect) for name in EVENT_COLUMNS]
        self._identifier_types = [event_identifiers.c[name].type.compile(dialect=dialect)
                                  for name in ("store_id", "kind", "value")]
        self._texts: dict[tuple[Any, ...], str] = {}

    def statement(self, delivery: Mapping[str, Any], rows: Rows) -> Statement:
        """The statement storing `delivery` and `rows` (values bound for the driver); its
        result is the new delivery's id (None for a duplicate) and the conversions whose
        event was added."""
        return self._statement(_INSERT, [delivery[name] for name in DELIVERY_COLUMNS], rows)

    def settlement(self, delivery_id: int, outcome: str, error: str | None, rows: Rows) -> Statement:
        """The statement settling a received delivery the worker converted: its outcome
        and error, and `rows`, provided it is still received; its result is the delivery's
        id (None when another converter settled it first: nothing is added) and the
        conversions whose event was added."""
        return self._statement(_SETTLE, [outcome, error, delivery_id], rows)

    def _statement(self, first: str, params: list[Any], rows: Rows) -> Statement:
        shape = (first, *(len(index) for _, _, index in rows))
        sql = self._texts.get(shape) or self._texts.setdefault(shape, self._text(first, shape[1:]))
        for _, row, _ in rows:
            params += [row[name] for name in EVENT_COLUMNS]
        for conversion, _, index in rows:
            for identifier in index:
                params += [conversion.event.idempotency_key, *(identifier[name] for name in IDENTIFIER_COLUMNS)]

        def read(cursor) -> tuple[int | None, list[Conversion]]:
            delivery_id, keys = cursor.fetchone()
            added = set(keys or ())
            return delivery_id, [conversion for conversion, _, _ in rows if conversion.event.idempotency_key in added]

        return Statement(sql, params, read)

    def _text(self, first: str, shape: tuple[int, ...]) -> str:
        d, e, i = deliveries.name, events.name, event_identifiers.name
        if first == _INSERT:
            placeholders = ", ".join(["%s"] * len(DELIVERY_COLUMNS))
            parts = [f"d AS (INSERT INTO {d} ({', '.join(DELIVERY_COLUMNS)}) VALUES ({placeholders}) "
                     "ON CONFLICT DO NOTHING RETURNING id)"]
        else:
            parts = [f"d AS (UPDATE {d} SET outcome = %s, error = %s WHERE id = %s "
                     f"AND outcome = '{DeliveryOutcome.RECEIVED.value}' RETURNING id)"]
        if shape:
            typed = ", ".join(f"CAST(%s AS {t})" for t in self._event_types)
            values = ", ".join(f"({typed})" for _ in shape)
            parts.append(
                f"e AS (INSERT INTO {e} ({', '.join(EVENT_COLUMNS)}, delivery_id) "
                f"SELECT v.*, d.id FROM d CROSS JOIN (VALUES {values}) AS v ({', '.join(EVENT_COLUMNS)}) "
                "ON CONFLICT (store_id, business_key) DO NOTHING RETURNING id, business_key)")
        if sum(shape):
            key_type = self._event_types[EVENT_COLUMNS.index("business_key")]
            typed = ", ".join(f"CAST(%s AS {t})" for t in (key_type, *self._identifier_types))
            values = ", ".join(f"({typed})" for _ in range(sum(shape)))
            parts.append(
                f"i AS (INSERT INTO {i} (event_id, {', '.join(IDENTIFIER_COLUMNS)}) "
                f"SELECT e.id, x.store_id, x.kind, x.value FROM e "
                f"JOIN (VALUES {values}) AS x (business_key, {', '.join(IDENTIFIER_COLUMNS)}) "
                "ON x.business_key = e.business_key)")
        added = "ARRAY(SELECT business_key FROM e)" if shape else "NULL"
        return f"WITH {', '.join(parts)} SELECT (SELECT id FROM d), {added}"
