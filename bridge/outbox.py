"""The outbox: deliveries received and the Kwai events derived from them.

Every write is one short transaction. A webhook is accepted (delivery + events) at
once or not at all; the dispatcher claims due events under a lease, so a dispatcher
that dies mid-send loses nothing: its rows come back when the lease runs out.
"""
from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta
from typing import Any, Iterator, Mapping, Sequence

from sqlalchemy import and_, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from adapters.base import Conversion
from bridge.db import (
    DELIVERY_OUTCOMES, EVENT_STATUSES, deliveries, event_identifiers, events, high_water, reading,
)
from kwai.events import KwaiEvent

log = logging.getLogger(__name__)

RESPONSE_LIMIT = 2000
PRUNE_BATCH = 500
#: Header names that must never be stored (signatures and credentials).
_SECRET_HEADER_WORDS = ("hmac", "signature", "authorization", "token", "secret", "cookie")


class UnknownDelivery(LookupError):
    """No delivery has that id."""


@dataclass(frozen=True)
class DeliveryRow:
    """One webhook as received; `body` is None once pruned."""

    id: int
    store_id: str
    platform: str
    topic: str
    delivery_key: str
    received_at: datetime
    outcome: str
    error: str | None
    body: bytes | None
    headers: dict[str, str] | None


@dataclass(frozen=True)
class EventRow:
    """One outbox row: a Kwai event and where it stands."""

    id: int
    store_id: str
    platform: str
    business_key: str
    event_name: str
    status: str
    event: KwaiEvent
    click_source: str | None
    identifiers: dict[str, str]
    skip_reason: str | None
    value_note: str | None
    attempts: int
    next_attempt_at: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    last_error: str | None
    last_result: int | None
    last_response: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivery_id: int | None


@dataclass(frozen=True)
class Claimed:
    """A row leased for sending: what a sender needs, the event still as stored."""

    id: int
    store_id: str
    attempts: int
    record: str

    @cached_property
    def event(self) -> KwaiEvent:
        # Parsed by the sender thread that asks, not by the loop that claims.
        return KwaiEvent.from_record(json.loads(self.record))


@dataclass(frozen=True)
class AcceptResult:
    """What `accept` did: the new delivery's id (None for a duplicate) and events created."""

    delivery_id: int | None
    duplicate: bool
    created: int


@dataclass(frozen=True)
class Finish:
    """The outcome of one attempt, as `Outbox.finish_many` records it."""

    event_id: int
    status: str  # sent | pending (retry at next_attempt_at) | dead | held
    now: datetime
    error: str | None = None
    response: str | None = None
    result: int | None = None
    next_attempt_at: datetime | None = None

    #: The columns an outcome writes, in the order of `values()`.
    COLUMNS = ("status", "updated_at", "next_attempt_at", "sent_at", "last_error", "last_response",
               "last_result")

    def values(self) -> tuple[Any, ...]:
        """The values this outcome writes (in COLUMNS order), hashable so that alike ones group."""
        return (self.status, self.now, self.next_attempt_at if self.status == "pending" else None,
                self.now if self.status == "sent" else None, _cut(self.error), _cut(self.response),
                self.result)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _cut(value: str | None, limit: int = RESPONSE_LIMIT) -> str | None:
    return None if value is None else value[:limit]


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): v for k, v in headers.items()
        if not any(word in k.lower() for word in _SECRET_HEADER_WORDS)
    }


def _event_row(m: Mapping[str, Any]) -> EventRow:
    values = {name: m[name] for name in EventRow.__dataclass_fields__}
    values["event"] = KwaiEvent.from_record(json.loads(m["event"]))
    values["identifiers"] = json.loads(m["identifiers"]) if m["identifiers"] else {}
    return EventRow(**values)


def _delivery_row(m: Mapping[str, Any]) -> DeliveryRow:
    values = {name: m[name] for name in DeliveryRow.__dataclass_fields__}
    values["headers"] = json.loads(m["headers"]) if m["headers"] else None
    return DeliveryRow(**values)


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

    def many(self, cursor, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor.executemany(self.sql, [self.params(row) for row in rows])


class _Statements:
    """The webhook path's statements, built once: building a statement costs more CPU
    than running it, and this path runs for every webhook."""

    def __init__(self, insert, dialect) -> None:
        columns = ("store_id", "platform", "topic", "delivery_key", "received_at", "outcome", "error",
                   "body", "headers")
        self.insert_delivery = _Prepared(
            insert(deliveries).values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing(index_elements=["store_id", "delivery_key"])
            .returning(deliveries.c.id), deliveries, dialect)
        columns = ("store_id", "platform", "business_key", "event_name", "status", "event", "click_source",
                   "identifiers", "skip_reason", "value_note", "attempts", "next_attempt_at", "created_at",
                   "updated_at", "delivery_id")
        self.insert_event = _Prepared(
            insert(events).values({name: bindparam(name) for name in columns})
            .on_conflict_do_nothing(index_elements=["store_id", "business_key"])
            .returning(events.c.id), events, dialect)
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
        # The dispatcher's claim: the same three statements on every pass.
        c = events.c
        self.expired = (
            select(c.id, c.lease_owner).where(c.status == "sending", c.lease_until <= bindparam("now"))
            .order_by(c.lease_until, c.id).limit(bindparam("lim")).with_for_update(skip_locked=True)
        )
        lease = (
            update(events).where(c.id.in_(bindparam("ids", expanding=True)))
            .values(status="sending", lease_until=bindparam("until"), lease_owner=bindparam("owner"),
                    updated_at=bindparam("now"))
        )
        # Due rows are chosen and leased by one statement (one round trip less per pass):
        # the sub-select locks what it picks, so two dispatchers never take the same row.
        # MATERIALIZED makes PostgreSQL run it once: inlined into a join it may be
        # rescanned and its LIMIT no longer bounds the rows leased.
        picked = (
            select(c.id).where(c.status == "pending", c.next_attempt_at <= bindparam("now"))
            .order_by(c.next_attempt_at, c.id).limit(bindparam("lim")).with_for_update(skip_locked=True)
        ).cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        lease_due = (
            update(events).add_cte(picked).where(c.id.in_(select(picked.c.id)), c.status == "pending")
            .values(status="sending", lease_until=bindparam("until"), lease_owner=bindparam("owner"),
                    updated_at=bindparam("now"))
        )
        self.lease = lease.returning(*events.c)
        self.lease_due = lease_due.returning(*events.c)
        # The dispatcher's own claim reads back only what a sender needs (and the due
        # time, to keep the oldest first).
        sending = (c.id, c.store_id, c.attempts, c.event, c.next_attempt_at)
        self.lease_for_sending = lease.returning(*sending)
        self.lease_due_for_sending = lease_due.returning(*sending)
        # The dispatcher's outcome: one statement per kind of outcome, rows by id.
        finish = update(events).values(
            attempts=c.attempts + 1, lease_until=None,
            **{name: bindparam(name) for name in Finish.COLUMNS})
        ours = (c.id.in_(bindparam("ids", expanding=True)), c.status == "sending")
        self.finish = finish.where(*ours)
        self.finish_owned = finish.where(*ours, c.lease_owner == bindparam("owner"))


class Outbox:
    """Storage for deliveries and events; every method is one or a few short transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._local = threading.local()
        self._statements = _Statements(self._insert, engine.dialect)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the `mark_*` and `hold_store` calls made inside, in this thread, in one
        transaction: one commit (one fsync on SQLite) for many outcomes."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.begin() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    # -- the webhook path ------------------------------------------------------------
    def accept(
        self, *, store_id: str, platform: str, topic: str, delivery_key: str,
        received_at: datetime, body: bytes, headers: Mapping[str, str],
        conversions: Sequence[Conversion], outcome: str = "queued", error: str | None = None,
    ) -> AcceptResult:
        """Store a delivery and its events in one transaction; a known delivery writes nothing."""
        _check_outcome(outcome)
        # Everything that needs no database is prepared before the write transaction
        # starts: on SQLite, writers queue for each other.
        q = self._statements
        delivery = q.insert_delivery.bind({
            "store_id": store_id, "platform": platform, "topic": topic, "delivery_key": delivery_key,
            "received_at": received_at, "outcome": outcome, "error": error, "body": body,
            "headers": _dumps(_safe_headers(headers))})
        rows = self._event_rows(store_id, platform, conversions, received_at)
        with self.engine.begin() as conn:
            cursor = conn.connection.cursor()
            try:
                delivery_id = q.insert_delivery.returning(cursor, delivery)
                if delivery_id is None:
                    return AcceptResult(delivery_id=None, duplicate=True, created=0)
                created = self._insert_events(cursor, delivery_id, store_id, rows)
            finally:
                cursor.close()
        return AcceptResult(delivery_id=delivery_id, duplicate=False, created=created)

    def add_conversions(
        self, delivery_id: int, *, store_id: str, platform: str,
        conversions: Sequence[Conversion], outcome: str, error: str | None = None,
        now: datetime,
    ) -> int:
        """Add events to a stored delivery and set its outcome (reprocessing); return events created."""
        _check_outcome(outcome)
        with self.engine.begin() as conn:
            found = conn.execute(
                update(deliveries).where(deliveries.c.id == delivery_id)
                .values(outcome=outcome, error=error)
            ).rowcount
            if not found:
                raise UnknownDelivery(f"no delivery {delivery_id}")
            return self._add(conn, delivery_id, store_id, platform, conversions, now)

    def _add(
        self, conn: Connection, delivery_id: int, store_id: str, platform: str,
        conversions: Sequence[Conversion], now: datetime,
    ) -> int:
        rows = self._event_rows(store_id, platform, conversions, now)
        cursor = conn.connection.cursor()
        try:
            return self._insert_events(cursor, delivery_id, store_id, rows)
        finally:
            cursor.close()

    def _event_rows(self, store_id: str, platform: str, conversions: Sequence[Conversion],
                    now: datetime) -> list[tuple[Conversion, dict[str, Any], list[dict[str, Any]]]]:
        """Per conversion: the event row and its identifier rows, converted for the driver
        (the ids that link them are filled in inside the transaction)."""
        q = self._statements
        rows = []
        for conversion in conversions:
            event = conversion.event
            if conversion.skip_reason:
                status = "skipped"
            elif event.click_id is None:
                status = "unattributed"
            else:
                status = "pending"
            identifiers = conversion.identifiers
            row = q.insert_event.bind({
                "store_id": store_id, "platform": platform, "business_key": event.idempotency_key,
                "event_name": event.event_name, "status": status, "event": _dumps(event.to_record()),
                "click_source": conversion.click_source, "identifiers": _dumps(dict(identifiers)),
                "skip_reason": conversion.skip_reason, "value_note": conversion.value_note, "attempts": 0,
                "next_attempt_at": now if status == "pending" else None, "created_at": now, "updated_at": now,
            })
            # The same identifiers as the JSON column, one row each, for indexed look-ups
            # (late binding, privacy requests).
            index = [q.insert_identifiers.bind({"store_id": store_id, "kind": kind, "value": value})
                     for kind, value in identifiers.items() if value]
            rows.append((conversion, row, index))
        return rows

    def _insert_events(self, cursor, delivery_id: int, store_id: str,
                       rows: Sequence[tuple[Conversion, dict[str, Any], list[dict[str, Any]]]]) -> int:
        q = self._statements
        created = 0
        for conversion, row, index in rows:
            if conversion.high_water and not self._passes_high_water(cursor, store_id, *conversion.high_water):
                continue
            row["delivery_id"] = delivery_id
            inserted = q.insert_event.returning(cursor, row)
            if inserted is not None:
                created += 1
                self._index_identifiers(cursor, inserted, index)
        return created

    def _index_identifiers(self, cursor, event_id: int, index: list[dict[str, Any]]) -> None:
        if index:
            for row in index:
                row["event_id"] = event_id
            self._statements.insert_identifiers.many(cursor, index)

    def _passes_high_water(self, cursor, store_id: str, key: str, count: int) -> bool:
        q = self._statements.high_water
        return q.returning(cursor, q.bind({"store_id": store_id, "key": key, "count": count})) is not None

    # -- the dispatcher ----------------------------------------------------------------
    def claim_due(
        self, *, now: datetime, limit: int, lease_seconds: float, owner: str = "",
    ) -> list[EventRow]:
        """Lease up to `limit` due events (expired leases first, then oldest due) to `owner`."""
        q = self._statements
        return [_event_row(row._mapping) for row in
                self._claim(q.lease, q.lease_due, now=now, limit=limit, lease_seconds=lease_seconds,
                            owner=owner)]

    def claim_for_sending(
        self, *, now: datetime, limit: int, lease_seconds: float, owner: str = "",
    ) -> list["Claimed"]:
        """`claim_due` for the dispatcher: the same leases, read back as `Claimed` rows
        whose event is parsed only when a sender asks for it."""
        q = self._statements
        return [Claimed(*row[:4]) for row in
                self._claim(q.lease_for_sending, q.lease_due_for_sending, now=now, limit=limit,
                            lease_seconds=lease_seconds, owner=owner)]

    def _claim(self, lease, lease_due, *, now: datetime, limit: int, lease_seconds: float,
               owner: str) -> list:
        """Lease expired rows by id with `lease`, then due ones with `lease_due` (both
        UPDATE ... RETURNING, id first); return the rows they return in claim order."""
        if limit <= 0:
            return []
        q = self._statements
        values = {"until": now + timedelta(seconds=lease_seconds), "owner": owner, "now": now}
        with self._writing() as conn:
            expired = conn.execute(q.expired, {"now": now, "lim": limit}).all()
            rows = []
            if expired:
                rows = conn.execute(lease, {**values, "ids": [row[0] for row in expired]}).all()
                order = {row[0]: i for i, row in enumerate(expired)}
                rows.sort(key=lambda row: order[row[0]])
            if len(rows) < limit:
                due = conn.execute(lease_due, {**values, "lim": limit - len(rows)}).all()
                due.sort(key=lambda row: (row.next_attempt_at, row.id))
                rows += due
        if expired:
            log.warning(
                "recovered %d events whose lease had expired: ids %s (previous owners %s)",
                len(expired), [r.id for r in expired], sorted({r.lease_owner or "" for r in expired}),
            )
        return rows

    def extend_lease(self, event_ids: Sequence[int], *, now: datetime, lease_seconds: float,
                     owner: str = "") -> int:
        """Push the lease of rows we still hold to now + lease_seconds; return how many."""
        if not event_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                update(events).where(*self._leased(None, owner), events.c.id.in_(list(event_ids)))
                .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
            ).rowcount

    @staticmethod
    def _leased(event_id: int | None, owner: str) -> list:
        where = [events.c.status == "sending"]
        if event_id is not None:
            where.append(events.c.id == event_id)
        if owner:
            where.append(events.c.lease_owner == owner)
        return where

    def finish_many(self, finishes: Sequence["Finish"], *, owner: str = "") -> int:
        """Record the outcome of many attempts; return how many rows were still ours
        (`sending`, and leased to `owner` when given) and so changed.

        Alike outcomes (the same status, time, answer and error: typically every event
        Kwai accepted in one dispatcher pass) share one UPDATE ... WHERE id IN (...).
        """
        groups: dict[tuple, list[int]] = {}
        for finish in finishes:
            groups.setdefault(finish.values(), []).append(finish.event_id)
        # Prebuilt statements: building one costs more CPU than running it.
        stmt = self._statements.finish_owned if owner else self._statements.finish
        changed = 0
        with self._writing() as conn:
            for values, ids in groups.items():
                params = dict(zip(Finish.COLUMNS, values), ids=ids)
                if owner:
                    params["owner"] = owner
                # Every finish closes one attempt, so `attempts` counts the sends tried.
                changed += conn.execute(stmt, params).rowcount
        return changed

    def _finish(self, finish: "Finish", owner: str) -> bool:
        return self.finish_many([finish], owner=owner) == 1

    def mark_sent(self, event_id: int, *, now: datetime, response: str, owner: str = "") -> bool:
        """Record a delivery Kwai accepted; False when the row is no longer ours to mark."""
        return self._finish(Finish(event_id, "sent", now, response=response, result=1), owner)

    def mark_retry(self, event_id: int, *, now: datetime, next_attempt_at: datetime, error: str,
                   response: str | None, result: int | None = None, owner: str = "") -> bool:
        """Record a failed attempt and schedule the next one."""
        return self._finish(Finish(event_id, "pending", now, error=error, response=response, result=result,
                                   next_attempt_at=next_attempt_at), owner)

    def mark_dead(self, event_id: int, *, now: datetime, error: str, response: str | None,
                  result: int | None = None, owner: str = "") -> bool:
        """Record a failure that will not be retried (kept for replay)."""
        return self._finish(Finish(event_id, "dead", now, error=error, response=response, result=result), owner)

    def mark_held(self, event_id: int, *, now: datetime, error: str, response: str | None,
                  result: int | None, owner: str = "") -> bool:
        """Park an event whose store needs attention (credentials); replay sends it later."""
        return self._finish(Finish(event_id, "held", now, error=error, response=response, result=result), owner)

    def hold_store(self, store_id: str, *, now: datetime, error: str, result: int | None = None) -> int:
        """Park every pending event of a store (recording Kwai's `result` that caused
        it, so that `replay --result` finds them all); return how many."""
        with self._writing() as conn:
            return conn.execute(
                update(events).where(events.c.store_id == store_id, events.c.status == "pending")
                .values(status="held", next_attempt_at=None, last_error=_cut(error), last_result=result,
                        updated_at=now)
            ).rowcount

    def replay(self, *, now: datetime, event_id: int | None = None, store_id: str | None = None,
               result: int | None = None) -> int:
        """Send dead or held events again from scratch (last_error kept); return how many."""
        where = [events.c.status.in_(("dead", "held"))]
        if event_id is not None:
            where.append(events.c.id == event_id)
        if store_id is not None:
            where.append(events.c.store_id == store_id)
        if result is not None:
            where.append(events.c.last_result == result)
        with self.engine.begin() as conn:
            return conn.execute(
                update(events).where(*where)
                .values(status="pending", next_attempt_at=now, attempts=0, lease_until=None,
                        lease_owner=None, updated_at=now)
            ).rowcount

    # -- attribution -----------------------------------------------------------------
    def attach_click(self, store_id: str, *, event_ids: Sequence[int], click_id: str,
                     source: str, now: datetime) -> int:
        """Give unattributed events a click id and queue them; return how many."""
        if not event_ids:
            return 0
        c = events.c
        done = 0
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(c.id, c.event).where(c.store_id == store_id, c.status == "unattributed",
                                            c.id.in_(list(event_ids)))
                .with_for_update()
            ).all()
            for row in rows:
                record = json.loads(row.event)
                record["click_id"] = click_id
                done += conn.execute(
                    update(events).where(c.id == row.id, c.status == "unattributed")
                    .values(event=_dumps(record), click_source=source, status="pending",
                            next_attempt_at=now, updated_at=now)
                ).rowcount
        return done

    def unattributed_since(self, store_id: str, *, since: datetime) -> list[EventRow]:
        """Events of a store still waiting for a click id, created at or after `since`."""
        return self._events(events.c.store_id == store_id, events.c.status == "unattributed",
                            events.c.created_at >= since, order=events.c.id)

    # -- reading ---------------------------------------------------------------------
    def _events(self, *where, order, limit: int | None = None, offset: int = 0) -> list[EventRow]:
        stmt = select(events).where(*where).order_by(order).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        with reading(self.engine) as conn:
            return [_event_row(m) for m in conn.execute(stmt).mappings()]

    def list_events(self, *, status: str | None = None, store_id: str | None = None,
                    limit: int = 100, offset: int = 0) -> list[EventRow]:
        """Events, newest first, optionally of one status and one store."""
        where = []
        if status is not None:
            where.append(events.c.status == status)
        if store_id is not None:
            where.append(events.c.store_id == store_id)
        return self._events(*where, order=events.c.id.desc(), limit=limit, offset=offset)

    def get_event(self, event_id: int) -> EventRow | None:
        found = self._events(events.c.id == event_id, order=events.c.id)
        return found[0] if found else None

    def counts(self, *, store_id: str | None = None) -> dict[str, int]:
        """Number of events in each status (every status present, zeros included)."""
        stmt = select(events.c.status, func.count()).group_by(events.c.status)
        if store_id is not None:
            stmt = stmt.where(events.c.store_id == store_id)
        result = dict.fromkeys(EVENT_STATUSES, 0)
        with reading(self.engine) as conn:
            result.update({status: n for status, n in conn.execute(stmt)})
        return result

    def due_count(self, now: datetime) -> int:
        """Events a claim at `now` could take (due pending rows and expired leases)."""
        c = events.c
        with reading(self.engine) as conn:
            return conn.execute(
                select(func.count()).select_from(events).where(
                    ((c.status == "pending") & (c.next_attempt_at <= now))
                    | ((c.status == "sending") & (c.lease_until <= now)))
            ).scalar_one()

    def next_due_at(self) -> datetime | None:
        """When the next event becomes claimable (a pending row falls due or a lease ends)."""
        c = events.c
        with reading(self.engine) as conn:
            times = [
                conn.execute(select(func.min(c.next_attempt_at)).where(c.status == "pending")).scalar(),
                conn.execute(select(func.min(c.lease_until)).where(c.status == "sending")).scalar(),
            ]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def deliveries_for_reprocess(self, *, since: datetime, store_id: str | None = None) -> list[DeliveryRow]:
        """Failed deliveries received at or after `since` whose body is still kept."""
        c = deliveries.c
        stmt = select(deliveries).where(c.outcome == "failed", c.body.is_not(None), c.received_at >= since)
        if store_id is not None:
            stmt = stmt.where(c.store_id == store_id)
        with reading(self.engine) as conn:
            return [_delivery_row(m) for m in conn.execute(stmt.order_by(c.id)).mappings()]

    def get_delivery(self, delivery_id: int) -> DeliveryRow | None:
        with reading(self.engine) as conn:
            m = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
        return None if m is None else _delivery_row(m)

    # -- housekeeping ----------------------------------------------------------------
    def prune(self, *, now: datetime, body_days: int = 7, sent_days: int = 30) -> dict[str, int]:
        """Drop old bodies, old sent and skipped events, and old deliveries no unsent event needs."""
        body_cutoff = now - timedelta(days=body_days)
        cutoff = now - timedelta(days=sent_days)
        d, e = deliveries.c, events.c
        bodies = self._batched(
            select(d.id).where(d.body.is_not(None), d.received_at < body_cutoff),
            lambda ids: update(deliveries).where(d.id.in_(ids)).values(body=None))
        done = self._batched(
            select(e.id).where(and_(e.status == "sent", e.sent_at < cutoff)
                               | and_(e.status == "skipped", e.updated_at < cutoff)),
            lambda ids: delete(events).where(e.id.in_(ids)))
        still_needed = exists().where(e.delivery_id == d.id, e.status != "sent")
        keys = self._batched(
            select(d.id).where(d.received_at < cutoff, ~still_needed),
            lambda ids: delete(deliveries).where(d.id.in_(ids)))
        if bodies or done or keys:
            log.info("pruned %d bodies, %d events, %d deliveries", bodies, done, keys)
        return {"bodies": bodies, "events": done, "deliveries": keys}

    def _batched(self, select_ids, change) -> int:
        # Short transactions: the webhook path never waits long for the write lock.
        total = 0
        while True:
            with self.engine.begin() as conn:
                ids = conn.execute(select_ids.limit(PRUNE_BATCH)).scalars().all()
                if ids:
                    conn.execute(change(ids))
            total += len(ids)
            if len(ids) < PRUNE_BATCH:
                return total

    def ping(self) -> None:
        """Raise when the database does not answer (readiness)."""
        with reading(self.engine) as conn:
            conn.execute(select(1)).scalar_one()


def _check_outcome(outcome: str) -> None:
    if outcome not in DELIVERY_OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
