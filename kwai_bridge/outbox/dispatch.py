"""The dispatcher's queries on the outbox."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import select, update

from kwai_bridge.db import events
from kwai_bridge.outbox.rows import Claimed, EventRow, Finish, _cut, _event_row

log = logging.getLogger(__name__)


class Dispatching:
    """The dispatcher's side of the outbox: claims under a lease, outcomes, holds, replays.

    Mixed into `Outbox`, whose engine, statements and `_writing()` it uses.
    """

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
        recover_expired: bool = True,
    ) -> list["Claimed"]:
        """`claim_due` for the dispatcher: the same leases, read back as `Claimed` rows
        whose event is parsed only when a sender asks for it. With `recover_expired`
        false, only due rows are claimed (expired leases wait for a later claim)."""
        q = self._statements
        return [Claimed(*row[:4]) for row in
                self._claim(q.lease_for_sending, q.lease_due_for_sending, now=now, limit=limit,
                            lease_seconds=lease_seconds, owner=owner, recover_expired=recover_expired)]

    def _claim(self, lease, lease_due, *, now: datetime, limit: int, lease_seconds: float,
               owner: str, recover_expired: bool = True) -> list:
        """Lease expired rows by id with `lease`, then due ones with `lease_due` (both
        UPDATE ... RETURNING, id first); return the rows they return in claim order."""
        if limit <= 0:
            return []
        q = self._statements
        values = {"until": now + timedelta(seconds=lease_seconds), "owner": owner, "now": now}
        with self._writing() as conn:
            expired = conn.execute(q.expired, {"now": now, "lim": limit}).all() if recover_expired else []
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

    def held_stores(self, store_ids: Iterable[str], *, result: int = 10006) -> set[str]:
        """Which of `store_ids` have events held for Kwai's `result` (a refused token)."""
        wanted = sorted(set(store_ids))
        if not wanted:
            return set()
        c = events.c
        with self._writing() as conn:
            return set(conn.execute(select(c.store_id).distinct().where(
                c.store_id.in_(wanted), c.status == "held", c.last_result == result)).scalars())

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
