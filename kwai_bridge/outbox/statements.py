"""Statements the hot paths run, built once: the webhook path's inserts, prepared for
the driver, and the dispatcher's claims and outcomes."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import bindparam, select, update

from kwai_bridge.db import DeliveryOutcome, EventStatus, deliveries, event_identifiers, events, high_water, upsert_insert
from kwai_bridge.outbox.rows import Finish


class _Prepared:
    """An INSERT compiled once for the engine's dialect and run on the driver's cursor.

    The webhook path holds the write lock (on SQLite, every writer's) while it inserts;
    going through the SQL expression layer costs more CPU per statement than SQLite
    takes to run it. Values are converted by the columns' own bind processors (the
    same conversion the expression layer applies) before the transaction starts.
    """

    def __init__(self, stmt, table, dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.names = tuple(compiled.binds)
        self.positional = compiled.positiontup is not None
        if self.positional:
            self.names = tuple(compiled.positiontup)
        processors = {name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                      for name in self.names}
        self.processors = {name: f for name, f in processors.items() if f is not None}

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` converted for the driver (done outside the transaction)."""
        bound = dict(values)
        for name, process in self.processors.items():
            if name in bound:
                bound[name] = process(bound[name])
        return bound

    def params(self, bound: Mapping[str, Any]) -> tuple | Mapping[str, Any]:
        return tuple(bound[name] for name in self.names) if self.positional else bound

    def returning(self, cursor, bound: Mapping[str, Any]) -> Any:
        """Run with `bound` values; the first RETURNING value, None when no row came back."""
        cursor.execute(self.sql, self.params(bound))
        rows = cursor.fetchall()
        return rows[0][0] if rows else None

    def row(self, cursor, bound: Mapping[str, Any]) -> tuple | None:
        """Run with `bound` values; the first row, None when there is none."""
        cursor.execute(self.sql, self.params(bound))
        return cursor.fetchone()

    def many(self, cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor.executemany(self.sql, [self.params(row) for row in rows])


class _Statements:
    """The statements run for every webhook and on every dispatcher pass, built once:
    building a statement costs more CPU than running it."""

    def __init__(self, dialect) -> None:
        self._webhook(upsert_insert(dialect), dialect)
        self._claims(dialect)
        self._finishes()

    def _webhook(self, insert, dialect) -> None:
        columns = ("store_id", "platform", "topic", "delivery_key", "received_at", "outcome", "error",
                   "body", "headers", "body_sha256")
        # No conflict target: a known delivery key and a known body (`uq_deliveries_store_body`)
        # are both a duplicate, on SQLite as on PostgreSQL.
        self.insert_delivery = _Prepared(
            insert(deliveries).values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing()
            .returning(deliveries.c.id), deliveries, dialect)
        d = deliveries.c
        self.same_body = _Prepared(
            select(d.id, d.topic).where(d.store_id == bindparam("store_id"), d.body_sha256 == bindparam("body_sha256")),
            deliveries, dialect)
        columns = ("store_id", "platform", "business_key", "event_name", "status", "event", "click_source",
                   "identifiers", "skip_reason", "value_note", "click_note", "attempts", "next_attempt_at", "created_at",
                   "updated_at", "delivery_id")
        self.insert_event = _Prepared(
            insert(events).values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing(index_elements=["store_id", "business_key"])
            .returning(events.c.id), events, dialect)
        # A received delivery the worker converted, provided no converter settled it first.
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.settle_delivery = (f"UPDATE deliveries SET outcome = {mark}, error = {mark} WHERE id = {mark} "
                                f"AND outcome = '{DeliveryOutcome.RECEIVED.value}'")
        columns = ("event_id", "store_id", "kind", "value")
        self.insert_identifiers = _Prepared(
            insert(event_identifiers).values({name: bindparam(name) for name in columns}),
            event_identifiers, dialect)
        # One upsert: a row comes back only when `count` beats the stored count, so two
        # concurrent deliveries of the same cart cannot both pass the same mark.
        stmt = insert(high_water).values(store_id=bindparam("store_id"), key=bindparam("key"),
                                         count=bindparam("count"))
        self.high_water = _Prepared(stmt.on_conflict_do_update(
            index_elements=["store_id", "key"],
            set_={"count": stmt.excluded["count"]},
            where=high_water.c["count"] < stmt.excluded["count"],
        ).returning(high_water.c["count"]), high_water, dialect)

    def _claims(self, dialect) -> None:
        """The dispatcher's claim: the same three statements on every pass."""
        c = events.c
        self.expired = (
            select(c.id, c.lease_owner).where(c.status == EventStatus.SENDING, c.lease_until <= bindparam("now"))
            .order_by(c.lease_until, c.id).limit(bindparam("lim")).with_for_update(skip_locked=True)
        )
        leased = {"status": EventStatus.SENDING, "lease_until": bindparam("until"),
                  "lease_owner": bindparam("owner"), "updated_at": bindparam("now")}
        # Due rows are chosen and leased by one statement (one round trip less per pass):
        # the sub-select locks what it picks, so two dispatchers never take the same row.
        # MATERIALIZED makes PostgreSQL run it once: inlined into a join it may be
        # rescanned and its LIMIT no longer bounds the rows leased.
        picked = (
            select(c.id).where(c.status == EventStatus.PENDING, c.next_attempt_at <= bindparam("now"))
            .order_by(c.next_attempt_at, c.id).limit(bindparam("lim")).with_for_update(skip_locked=True)
        ).cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        # Both read back only what a sender needs (and the due time, to keep the oldest first).
        sending = (c.id, c.store_id, c.attempts, c.event, c.next_attempt_at)
        self.lease = (
            update(events).where(c.id.in_(bindparam("ids", expanding=True))).values(leased)
            .returning(*sending))
        # On SQLite the rows picked cannot change before they are leased (one writer at
        # a time), and a status condition here makes its planner walk every pending row
        # of the status index instead of looking the picked ids up: a claim then costs
        # as much as the backlog is long.
        still_pending = () if dialect.name == "sqlite" else (c.status == EventStatus.PENDING,)
        self.lease_due = (
            update(events).add_cte(picked).where(c.id.in_(select(picked.c.id)), *still_pending)
            .values(leased).returning(*sending))

    def _finishes(self) -> None:
        """The dispatcher's outcome: one statement per kind of outcome, rows by id."""
        c = events.c
        finish = update(events).values(
            attempts=c.attempts + 1, lease_until=None,
            **{name: bindparam(name) for name in Finish.COLUMNS})
        ours = (c.id.in_(bindparam("ids", expanding=True)), c.status == EventStatus.SENDING)
        self.finish = finish.where(*ours)
        self.finish_owned = finish.where(*ours, c.lease_owner == bindparam("owner"))
