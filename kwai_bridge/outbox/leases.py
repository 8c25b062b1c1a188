"""The dispatcher's queries on the outbox: claims under a lease, outcomes, holds, replays."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable, Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from kwai_bridge.db import EventStatus, event_attempts, events
from kwai_bridge.outbox.rows import Claimed, Finish, _cut

log = logging.getLogger(__name__)


class LeaseQueries:
    """The dispatcher's side of the outbox.

    Mixed into `Outbox`, whose engine, statements and `_writing()` it uses.
    """

    def claim_for_sending(
        self, *, now: datetime, limit: int, lease_seconds: float, owner: str = "",
        recover_expired: bool = True,
    ) -> list[Claimed]:
        """Lease up to `limit` events to `owner` until now + `lease_seconds`: rows whose
        lease has expired first (oldest lease first), then due rows (oldest due first).
        With `recover_expired` false, only due rows are claimed (expired leases wait for a
        later claim). The event of a `Claimed` row is parsed only when a sender asks."""
        if limit <= 0:
            return []
        q = self._statements
        values = {"until": now + timedelta(seconds=lease_seconds), "owner": owner, "now": now}
        with self._writing() as conn:
            expired = conn.execute(q.expired, {"now": now, "lim": limit}).all() if recover_expired else []
            rows = []
            if expired:
                rows = conn.execute(q.lease, {**values, "ids": [row[0] for row in expired]}).all()
                order = {row[0]: i for i, row in enumerate(expired)}
                rows.sort(key=lambda row: order[row[0]])
            if len(rows) < limit:
                due = conn.execute(q.lease_due, {**values, "lim": limit - len(rows)}).all()
                due.sort(key=lambda row: (row.next_attempt_at, row.id))
                rows += due
        if expired:
            log.warning(
                "recovered %d events whose lease had expired: ids %s (previous owners %s)",
                len(expired), [r.id for r in expired], sorted({r.lease_owner or "" for r in expired}),
            )
        return [Claimed(*row[:4]) for row in rows]

    def finish_many(self, finishes: Sequence[Finish], *, owner: str = "") -> int:
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
            if finishes:
                # The history an operator reads (`GET /api/v1/events/<id>`): one row per attempt.
                conn.execute(event_attempts.insert(), [f.attempt() for f in finishes])
        return changed

    def hold_store(self, store_id: str, *, now: datetime, error: str, result: int | None = None) -> int:
        """Park every pending event of a store (recording Kwai's `result` that caused
        it, so that `replay --result` finds them all); return how many."""
        with self._writing() as conn:
            return conn.execute(
                update(events).where(events.c.store_id == store_id, events.c.status == EventStatus.PENDING)
                .values(status=EventStatus.HELD, next_attempt_at=None, last_error=_cut(error), last_result=result,
                        updated_at=now)
            ).rowcount

    def held_stores(self, store_ids: Iterable[str], *, result: int) -> set[str]:
        """Which of `store_ids` have events held for Kwai's `result` (a refused token)."""
        wanted = sorted(set(store_ids))
        if not wanted:
            return set()
        c = events.c
        with self._writing() as conn:
            return set(conn.execute(select(c.store_id).distinct().where(
                c.store_id.in_(wanted), c.status == EventStatus.HELD, c.last_result == result)).scalars())

    def replay(self, *, now: datetime, event_id: int | None = None, store_id: str | None = None,
               result: int | None = None, statuses: Sequence[str] = (EventStatus.DEAD, EventStatus.HELD),
               stores: Sequence[str] | None = None, retry_pending: bool = False,
               within: Callable[[Connection, int], None] | None = None) -> int:
        """Send dead or held events (those of `statuses`) again from scratch, last_error
        kept; with `retry_pending`, a pending event waiting out its back-off is due now
        too, its attempts kept ("retry now"). `stores` limits it to those stores (None:
        every store). `within(conn, moved)` runs in the same transaction (the audit trail's
        entry). Return how many events changed."""
        c = events.c
        where = []
        if event_id is not None:
            where.append(c.id == event_id)
        if store_id is not None:
            where.append(c.store_id == store_id)
        if stores is not None:
            where.append(c.store_id.in_(list(stores)))
        if result is not None:
            where.append(c.last_result == result)
        moved = 0
        with self.engine.begin() as conn:
            if statuses:
                moved += conn.execute(
                    update(events).where(c.status.in_(list(statuses)), *where)
                    .values(status=EventStatus.PENDING, next_attempt_at=now, attempts=0, lease_until=None,
                            lease_owner=None, updated_at=now)
                ).rowcount
            if retry_pending:
                moved += conn.execute(
                    update(events).where(c.status == EventStatus.PENDING, c.next_attempt_at > now, *where)
                    .values(next_attempt_at=now, updated_at=now)
                ).rowcount
            if within is not None:
                within(conn, moved)
        return moved
