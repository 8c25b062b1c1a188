"""Heartbeats: the last sign of life of each long-running process, kept in the shared
database, so that readiness (and the status API) can tell a dispatcher that runs from
one that died or hangs, wherever it runs.

A dispatcher beats from its loop, at most once every BEAT_SECONDS: on SQLite every
commit is an fsync, so not once per pass. It removes its row when it stops cleanly,
so a row whose beat is old belongs to a process that was killed or is stuck. Rows not
renewed for RETENTION are dropped when a dispatcher starts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from kwai_bridge.db import heartbeats, reading, upsert_insert

log = logging.getLogger(__name__)

#: The role a dispatcher beats under.
DISPATCHER = "dispatcher"
#: The shortest time between two beats of one process.
BEAT_SECONDS = 1.0
#: How long the row of a process that stopped beating is kept (and shown as stale).
RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class Beat:
    """One process's row: who (`owner`, host:pid), since when, and its last beat."""

    role: str
    owner: str
    started_at: datetime
    beat_at: datetime


class Heartbeats:
    """The `heartbeats` table: the one place that runs SQL on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = upsert_insert(engine.dialect)

    def beat(self, role: str, owner: str, *, started_at: datetime, now: datetime) -> None:
        """Record that `owner` (running since `started_at`) is alive at `now`."""
        stmt = self._insert(heartbeats).values(role=role, owner=owner, started_at=started_at, beat_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["role", "owner"],
            set_={"started_at": stmt.excluded.started_at, "beat_at": stmt.excluded.beat_at})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def remove(self, role: str, owner: str) -> None:
        """Forget `owner`'s row (it stopped cleanly)."""
        with self.engine.begin() as conn:
            conn.execute(delete(heartbeats).where(heartbeats.c.role == role, heartbeats.c.owner == owner))

    def prune(self, role: str, *, before: datetime) -> int:
        """Drop the rows of `role` whose last beat is older than `before`; return how many."""
        with self.engine.begin() as conn:
            return conn.execute(delete(heartbeats).where(heartbeats.c.role == role,
                                                         heartbeats.c.beat_at < before)).rowcount

    def beats(self, role: str) -> list[Beat]:
        """Every row of `role`, the latest beat first."""
        c = heartbeats.c
        stmt = select(c.role, c.owner, c.started_at, c.beat_at).where(c.role == role).order_by(
            c.beat_at.desc(), c.owner)
        with reading(self.engine) as conn:
            return [Beat(*row) for row in conn.execute(stmt)]


class Pacemaker:
    """Beats for one process from its loop: `tick(now)` on every pass writes at most once
    every `every` seconds. A failed write is logged, never raised: the loop goes on, and
    readiness reports the beat as stale if the database stays out of reach."""

    def __init__(self, heartbeats: Heartbeats, *, role: str, owner: str, every: float = BEAT_SECONDS) -> None:
        self.heartbeats = heartbeats
        self.role = role
        self.owner = owner
        self.every = every
        self._started_at: datetime | None = None
        self._last: datetime | None = None
        self._failing = False

    def start(self, now: datetime) -> None:
        """Drop rows of processes gone for longer than RETENTION, then beat."""
        self._started_at = now
        self._write(lambda: self.heartbeats.prune(self.role, before=now - RETENTION))
        self.tick(now)

    def tick(self, now: datetime) -> None:
        last = self._last
        # A clock that went back also beats, rather than waiting until it catches up.
        if last is not None and 0 <= (now - last).total_seconds() < self.every:
            return
        self._last = now
        started_at = self._started_at or now
        self._write(lambda: self.heartbeats.beat(self.role, self.owner, started_at=started_at, now=now))

    def stop(self) -> None:
        """Remove this process's row: it stops cleanly, it is not dead."""
        self._write(lambda: self.heartbeats.remove(self.role, self.owner))

    def _write(self, write) -> None:
        try:
            write()
        except Exception as exc:  # the loop must go on; readiness will see the stale beat
            if not self._failing:
                log.warning("%s %s: heartbeat not recorded (%s); trying again", self.role, self.owner,
                            exc.__class__.__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("%s %s: heartbeat recorded again", self.role, self.owner)
            self._failing = False


@dataclass(frozen=True)
class Liveness:
    """What the heartbeats of one role say at `checked_at`: the rows that beat within
    `stale_after` seconds (`live`) and those that did not (`stale`), latest first."""

    role: str
    checked_at: datetime
    stale_after: float
    live: tuple[Beat, ...]
    stale: tuple[Beat, ...]

    @property
    def problem(self) -> str | None:
        """Why the role counts as down, or None. No row at all is not a problem: none has
        run yet, or all stopped cleanly (a deployment that sends nothing, or whose
        dispatchers are being replaced)."""
        if self.live or not self.stale:
            return None
        newest = self.stale[0]
        age = (self.checked_at - newest.beat_at).total_seconds()
        return (f"no {self.role} has sent a heartbeat in the last {self.stale_after:g} s "
                f"(the latest, from {newest.owner}, is {age:.0f} s old): events wait in the outbox "
                f"until one runs (`kwai-bridge worker` or `kwai-bridge serve --with-worker`)")


def liveness(heartbeats: Heartbeats, role: str = DISPATCHER, *, now: datetime, stale_after: float) -> Liveness:
    """Read the heartbeats of `role`: what readiness and the status API report."""
    live, stale = [], []
    for beat in heartbeats.beats(role):
        (live if (now - beat.beat_at).total_seconds() <= stale_after else stale).append(beat)
    return Liveness(role=role, checked_at=now, stale_after=stale_after, live=tuple(live), stale=tuple(stale))


__all__ = ["BEAT_SECONDS", "DISPATCHER", "RETENTION", "Beat", "Heartbeats", "Liveness", "Pacemaker", "liveness"]
