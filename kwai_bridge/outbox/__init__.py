"""The outbox: deliveries received and the Kwai events derived from them.

This package is the one place that runs SQL on `deliveries`, `events`,
`event_identifiers` and `high_water`: the webhook path, attribution's and the
command line's queries here (`Outbox`), the dispatcher's in `leases`, privacy
requests' in `customers`. Every write is one short transaction. A webhook is accepted
(delivery + events) at once or not at all; the dispatcher claims due events under a
lease, so a dispatcher that dies mid-send loses nothing: its rows come back when the
lease runs out.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.engine import Connection, Engine

from adapters.values import Conversion
from kwai_bridge.db import (
    DeliveryOutcome, EventStatus, any_pair, deliveries, event_identifiers, events, reading,
)
from kwai_bridge.jsontext import compact
from kwai_bridge.outbox.commits import for_engine
from kwai_bridge.outbox.leases import LeaseQueries
from kwai_bridge.outbox.rows import (
    PRUNE_BATCH, RESPONSE_LIMIT, AcceptResult, Claimed, Converted, DeliveryRow, EventRow, Finish, UnknownDelivery, _check_outcome,
    _safe_headers, delivery_row, event_row,
)
from kwai_bridge.outbox.single import OneStatementAccept, run_alone, sent_together
from kwai_bridge.outbox.statements import _Statements
from kwai_bridge.outbox.withdrawals import Withdrawals

log = logging.getLogger(__name__)

__all__ = ["RESPONSE_LIMIT", "AcceptResult", "Claimed", "Converted", "DeliveryRow", "EventRow", "Finish", "Outbox",
           "UnknownDelivery", "delivery_row", "event_row"]


class Outbox(LeaseQueries):
    """Storage for deliveries and events; every method is one or a few short transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._statements = _Statements(engine.dialect)
        self._commits = for_engine(engine)
        self._single = OneStatementAccept(engine.dialect) if engine.dialect.name == "postgresql" else None
        self._withdrawals = Withdrawals(engine.dialect)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the `finish_many`, `claim_for_sending`, `hold_store` and `held_stores` calls
        made inside, in this thread, in one transaction: one commit (one fsync on SQLite)
        for many outcomes."""
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
        conversions: Sequence[Conversion], outcome: str = DeliveryOutcome.QUEUED, error: str | None = None,
        body_sha256: str | None = None, body_decides: bool = False, before: Callable[[Any], None] | None = None,
    ) -> AcceptResult:
        """Store a delivery and its events in one transaction.

        A known delivery key, or a known `body_sha256` (the signed body's hash: a body
        is accepted once per store, under whatever delivery id or topic it comes back),
        is a duplicate and writes nothing; except that with `body_decides` (a topic
        whose events the body alone decides) a body first stored under another topic
        still gets the events of `conversions` it lacks, on that first delivery.
        `before(cursor)` runs first in the transaction (a request's rate counters: what
        it raises rolls everything back).
        """
        _check_outcome(outcome)
        # Everything that needs no database is prepared before the write transaction
        # starts: on SQLite, writers queue for each other.
        q = self._statements
        delivery = q.insert_delivery.bind({
            "store_id": store_id, "platform": platform, "topic": topic, "delivery_key": delivery_key,
            "received_at": received_at, "outcome": outcome, "error": error, "body": body,
            "headers": compact(_safe_headers(headers)), "body_sha256": body_sha256})
        rows = self._event_rows(store_id, platform, conversions, received_at)
        # The one-statement path stores a delivery and its events; a request's own step
        # (`before`) and a withdrawal need the transaction below.
        if (self._single is not None and before is None
                and not any(conversion.high_water or conversion.withdraw for conversion in conversions)):
            delivery_id, added = run_alone(self.engine, self._single.statement(delivery, rows))
            if delivery_id is not None:
                return AcceptResult(delivery_id=delivery_id, duplicate=False, created=len(added), added=tuple(added))
            if not (body_decides and body_sha256 is not None and rows):
                return AcceptResult(delivery_id=None, duplicate=True, created=0)
            # A body first stored under another topic may still owe this topic's events.

        def store(cursor) -> AcceptResult:
            if before is not None:
                before(cursor)
            delivery_id = q.insert_delivery.returning(cursor, delivery)
            if delivery_id is None:
                earlier = None
                if body_decides and body_sha256 is not None and rows:
                    earlier = q.same_body.row(cursor, {"store_id": store_id, "body_sha256": body_sha256})
                if earlier is None or earlier[1] == topic:
                    return AcceptResult(delivery_id=None, duplicate=True, created=0)
                added = self._insert_events(cursor, earlier[0], store_id, rows)
                return AcceptResult(delivery_id=earlier[0], duplicate=True, created=len(added), added=added)
            added = self._insert_events(cursor, delivery_id, store_id, rows)
            # a cancelled or refunded order: its unsent events are skipped (outbox.withdrawals)
            self._withdrawals.apply(cursor, store_id, conversions, now=received_at)
            return AcceptResult(delivery_id=delivery_id, duplicate=False, created=len(added), added=added)

        # On SQLite committed together with the other webhooks of this process that wait
        # to be (kwai_bridge.outbox.commits); on PostgreSQL at once.
        return self._commits.run(store)

    def seen(self, store_id: str, *, delivery_key: str, body_sha256: str) -> bool:
        """Whether the store has a delivery with this key or this body already."""
        d = deliveries.c
        stmt = select(d.id).where(d.store_id == store_id,
                                  (d.delivery_key == delivery_key) | (d.body_sha256 == body_sha256)).limit(1)
        with reading(self.engine) as conn:
            return conn.execute(stmt).first() is not None

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

    # -- conversion in the worker -----------------------------------------------------
    def received(self, *, limit: int) -> list[DeliveryRow]:
        """Deliveries the webhook path stored as received and nobody has converted yet,
        oldest first (through a partial index: the cost does not grow with the table)."""
        with reading(self.engine) as conn:
            return [delivery_row(m) for m in conn.execute(self._received(limit)).mappings()]

    @contextmanager
    def receiving(self, *, limit: int) -> Iterator[list[DeliveryRow]]:
        """Received deliveries to convert, oldest first; `settle_received` called inside
        the block stores them. On PostgreSQL the block is one transaction that holds
        them (FOR NO KEY UPDATE SKIP LOCKED): converters in other threads, processes or
        machines take the next ones instead of converting the same, and a webhook adding
        events to one of them (a body under a second topic) is not held up. On SQLite,
        one writer at a time, they are read as they are."""
        if self.engine.dialect.name != "postgresql":
            yield self.received(limit=limit)
            return
        with self.batch():
            rows = self._local.conn.execute(self._received(limit).with_for_update(skip_locked=True, key_share=True))
            yield [delivery_row(m) for m in rows.mappings()]

    @staticmethod
    def _received(limit: int):
        c = deliveries.c
        return select(deliveries).where(c.outcome == DeliveryOutcome.RECEIVED).order_by(c.id).limit(limit)

    def settle_received(self, converted: Sequence[Converted], *, now: datetime) -> list[AcceptResult]:
        """Record converted deliveries in one transaction (one commit for the batch): each
        one still received takes its outcome, events and withdrawals, as `accept` would
        have stored them at once, in the batch's order. One that another process settled
        first is left as it is and comes back as a duplicate: its conditional update
        changes no row (on PostgreSQL it waits for the other's commit, then finds the
        outcome changed), so two converters never both add events. On PostgreSQL each
        delivery is one statement (`OneStatementAccept.settlement`), and the statements
        of a run of deliveries are sent together: one round trip for them all."""
        results: list[AcceptResult | None] = []
        together: list[tuple[int, Converted, Any]] = []  # (index in results, item, statement)
        with self._writing() as conn:
            cursor = conn.connection.cursor()
            try:
                for item in converted:
                    _check_outcome(item.outcome)
                    rows = self._event_rows(item.store_id, item.platform, item.conversions, now)
                    if self._single is not None and not any(c.high_water or c.withdraw for c in item.conversions):
                        statement = self._single.settlement(item.delivery_id, item.outcome, item.error, rows)
                        together.append((len(results), item, statement))
                        results.append(None)
                        continue
                    # A withdrawal or a high-water mark needs the statements one by one;
                    # what came before it in the batch is stored first.
                    self._send_together(conn, together, results)
                    results.append(self._settle_one(cursor, item, rows, now))
                self._send_together(conn, together, results)
            finally:
                cursor.close()
        return [result for result in results if result is not None]

    def _send_together(self, conn: Connection, together: list[tuple[int, Converted, Any]],
                       results: list[AcceptResult | None]) -> None:
        if not together:
            return
        done = sent_together(conn.connection.dbapi_connection, [statement for _, _, statement in together])
        for (index, item, _), (delivery_id, added) in zip(together, done):
            results[index] = AcceptResult(delivery_id=item.delivery_id, duplicate=delivery_id is None,
                                          created=len(added), added=tuple(added))
        together.clear()

    def _settle_one(self, cursor, item: Converted, rows, now: datetime) -> AcceptResult:
        q = self._statements
        cursor.execute(q.settle_delivery, (item.outcome, item.error, item.delivery_id))
        if cursor.rowcount != 1:
            return AcceptResult(delivery_id=item.delivery_id, duplicate=True, created=0)
        added = self._insert_events(cursor, item.delivery_id, item.store_id, rows)
        self._withdrawals.apply(cursor, item.store_id, item.conversions, now=now)
        return AcceptResult(delivery_id=item.delivery_id, duplicate=False, created=len(added), added=added)

    def _add(
        self, conn: Connection, delivery_id: int, store_id: str, platform: str,
        conversions: Sequence[Conversion], now: datetime,
    ) -> int:
        rows = self._event_rows(store_id, platform, conversions, now)
        cursor = conn.connection.cursor()
        try:
            return len(self._insert_events(cursor, delivery_id, store_id, rows))
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
                status = EventStatus.SKIPPED
            elif event.click_id is None:
                status = EventStatus.UNATTRIBUTED
            else:
                status = EventStatus.PENDING
            identifiers = conversion.identifiers
            row = q.insert_event.bind({
                "store_id": store_id, "platform": platform, "business_key": event.idempotency_key,
                "event_name": event.event_name, "status": status, "event": compact(event.to_record()),
                "click_source": conversion.click_source, "identifiers": compact(dict(identifiers)),
                "skip_reason": conversion.skip_reason, "value_note": conversion.value_note,
                "click_note": conversion.click_note, "attempts": 0,
                "next_attempt_at": now if status == EventStatus.PENDING else None, "created_at": now, "updated_at": now,
            })
            # The same identifiers as the JSON column, one row each, for indexed look-ups
            # (late binding, privacy requests).
            index = [q.insert_identifiers.bind({"store_id": store_id, "kind": kind, "value": value})
                     for kind, value in identifiers.items() if value]
            rows.append((conversion, row, index))
        return rows

    def _insert_events(self, cursor, delivery_id: int, store_id: str,
                       rows: Sequence[tuple[Conversion, dict[str, Any], list[dict[str, Any]]]]) -> tuple[Conversion, ...]:
        """Insert the events not there yet; return the conversions whose event was added."""
        q = self._statements
        added = []
        for conversion, row, index in rows:
            if conversion.high_water and not self._passes_high_water(cursor, store_id, *conversion.high_water):
                continue
            row["delivery_id"] = delivery_id
            inserted = q.insert_event.returning(cursor, row)
            if inserted is not None:
                added.append(conversion)
                self._index_identifiers(cursor, inserted, index)
        return tuple(added)

    def _index_identifiers(self, cursor, event_id: int, index: list[dict[str, Any]]) -> None:
        if index:
            for row in index:
                row["event_id"] = event_id
            self._statements.insert_identifiers.many(cursor, index)

    def _passes_high_water(self, cursor, store_id: str, key: str, count: int) -> bool:
        q = self._statements.high_water
        return q.returning(cursor, q.bind({"store_id": store_id, "key": key, "count": count})) is not None

    # -- attribution -----------------------------------------------------------------
    def unattributed_matching(self, store_id: str, identifiers: Mapping[str, str], *,
                              since: datetime) -> list[tuple[int, dict[str, str]]]:
        """Unattributed events of a store created at or after `since` that carry any of
        `identifiers`, as (event id, all the event's identifiers), oldest first."""
        pairs = [(k, v) for k, v in identifiers.items() if v]
        if not pairs:
            return []
        e, ei = events.c, event_identifiers.c
        matching = select(ei.event_id).where(ei.store_id == store_id, any_pair(ei.kind, ei.value, pairs))
        stmt = (select(e.id, e.identifiers)
                .where(e.id.in_(matching), e.status == EventStatus.UNATTRIBUTED, e.created_at >= since)
                .order_by(e.id))
        with reading(self.engine) as conn:
            return [(row.id, json.loads(row.identifiers) if row.identifiers else {}) for row in conn.execute(stmt)]

    def attach_click(self, store_id: str, *, event_ids: Sequence[int], click_id: str,
                     source: str, now: datetime) -> int:
        """Give unattributed events a click id and queue them; return how many."""
        if not event_ids:
            return 0
        c = events.c
        done = 0
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(c.id, c.event).where(c.store_id == store_id, c.status == EventStatus.UNATTRIBUTED,
                                            c.id.in_(list(event_ids)))
                .with_for_update()
            ).all()
            for row in rows:
                record = json.loads(row.event)
                record["click_id"] = click_id
                done += conn.execute(
                    update(events).where(c.id == row.id, c.status == EventStatus.UNATTRIBUTED)
                    .values(event=compact(record), click_source=source, status=EventStatus.PENDING,
                            next_attempt_at=now, updated_at=now)
                ).rowcount
        return done

    def source_counts(self, *, store_id: str | None = None,
                      since: datetime) -> list[tuple[str, str, str | None, int]]:
        """(event name, status, click source, events) for the events created at or after
        `since` that are to be sent (skipped ones left out)."""
        e = events.c
        stmt = (select(e.event_name, e.status, e.click_source, func.count())
                .where(e.created_at >= since, e.status != EventStatus.SKIPPED)
                .group_by(e.event_name, e.status, e.click_source))
        if store_id is not None:
            stmt = stmt.where(e.store_id == store_id)
        with reading(self.engine) as conn:
            return [tuple(row) for row in conn.execute(stmt)]

    # -- reading ---------------------------------------------------------------------
    def list_events(self, *, status: str | None = None, store_id: str | None = None,
                    limit: int = 100, offset: int = 0) -> list[EventRow]:
        """Events, newest first, optionally of one status and one store."""
        stmt = select(events).order_by(events.c.id.desc()).offset(offset).limit(limit)
        if status is not None:
            stmt = stmt.where(events.c.status == status)
        if store_id is not None:
            stmt = stmt.where(events.c.store_id == store_id)
        with reading(self.engine) as conn:
            return [event_row(m) for m in conn.execute(stmt).mappings()]

    def counts(self, *, store_id: str | None = None) -> dict[str, int]:
        """Number of events in each status (every status present, zeros included)."""
        stmt = select(events.c.status, func.count()).group_by(events.c.status)
        if store_id is not None:
            stmt = stmt.where(events.c.store_id == store_id)
        result = {status.value: 0 for status in EventStatus}
        with reading(self.engine) as conn:
            result.update({status: n for status, n in conn.execute(stmt)})
        return result

    def deliveries_for_reprocess(self, *, since: datetime, store_id: str | None = None) -> list[DeliveryRow]:
        """Failed deliveries received at or after `since` whose body is still kept."""
        c = deliveries.c
        stmt = select(deliveries).where(c.outcome == DeliveryOutcome.FAILED, c.body.is_not(None),
                                        c.received_at >= since)
        if store_id is not None:
            stmt = stmt.where(c.store_id == store_id)
        with reading(self.engine) as conn:
            return [delivery_row(m) for m in conn.execute(stmt.order_by(c.id)).mappings()]

    # -- housekeeping ----------------------------------------------------------------
    def prune(self, *, now: datetime, body_days: int = 7, sent_days: int = 30,
              rest: Callable[[float], object] = time.sleep) -> dict[str, int]:
        """Drop old bodies, old sent and skipped events, and old deliveries no unsent event
        needs, in batches; after each, `rest(seconds)` as long as the batch took."""
        body_cutoff = now - timedelta(days=body_days)
        cutoff = now - timedelta(days=sent_days)
        d, e = deliveries.c, events.c
        # A received delivery keeps its body and its row until the worker converts it.
        unconverted = d.outcome == DeliveryOutcome.RECEIVED
        bodies = self._batched(
            select(d.id).where(d.body.is_not(None), d.received_at < body_cutoff, ~unconverted),
            lambda ids: update(deliveries).where(d.id.in_(ids)).values(body=None), rest)
        done = self._batched(
            select(e.id).where(and_(e.status == EventStatus.SENT, e.sent_at < cutoff)
                               | and_(e.status == EventStatus.SKIPPED, e.updated_at < cutoff)),
            lambda ids: delete(events).where(e.id.in_(ids)), rest)
        still_needed = exists().where(e.delivery_id == d.id, e.status != EventStatus.SENT)
        keys = self._batched(
            select(d.id).where(d.received_at < cutoff, ~still_needed, ~unconverted),
            lambda ids: delete(deliveries).where(d.id.in_(ids)), rest)
        if bodies or done or keys:
            log.info("pruned %d bodies, %d events, %d deliveries", bodies, done, keys)
        return {"bodies": bodies, "events": done, "deliveries": keys}

    def _batched(self, select_ids, change, rest: Callable[[float], object]) -> int:
        # Short transactions: the webhook path never waits long for the write lock. And a
        # rest after each as long as it took: back to back, a million rows pruned kept
        # the writer lock (and a core) so busy that webhook p99 grew twelvefold.
        total = 0
        while True:
            started = time.monotonic()
            with self.engine.begin() as conn:
                ids = conn.execute(select_ids.limit(PRUNE_BATCH)).scalars().all()
                if ids:
                    conn.execute(change(ids))
            total += len(ids)
            if len(ids) < PRUNE_BATCH:
                return total
            rest(time.monotonic() - started)

    def ping(self) -> None:
        """Raise when the database does not answer (readiness)."""
        with reading(self.engine) as conn:
            conn.execute(select(1)).scalar_one()
