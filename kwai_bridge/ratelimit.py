"""Request counters over fixed windows, kept in the database (`rate_windows`) so that a
limit holds across web workers, processes and machines; the one module that runs SQL on
that table.

A window is `seconds` long and starts at a multiple of it; a request adds one to each of
its counters with a single upsert, in the caller's transaction, and is refused when one
passes its limit. The caller then rolls back, so a refused request counts nothing. The
first request of a new window restarts the counter; `prune` drops counters of windows
that have passed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from sqlalchemy import case, delete
from sqlalchemy.engine import Connection, Dialect

from kwai_bridge.db import rate_windows, upsert_insert

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Limit:
    """At most `per_window` requests counted under (`scope`, `key`) in one window."""

    scope: str
    key: str
    per_window: int


class RateLimited(Exception):
    """A request passed `limit`; it may be made again after `retry_after` seconds."""

    def __init__(self, limit: Limit, retry_after: float) -> None:
        super().__init__(f"more than {limit.per_window} requests in the window ({limit.scope})")
        self.limit = limit
        self.retry_after = retry_after


class FixedWindows:
    """The counters of `rate_windows`, over windows of `seconds`."""

    def __init__(self, dialect: Dialect, *, seconds: int = 60) -> None:
        self.seconds = seconds
        c = rate_windows.c
        stmt = upsert_insert(dialect)(rate_windows).values(count=1)
        count = c["count"]  # by name: `.count` would be the collection's method
        passed = c.window_start < stmt.excluded.window_start  # a row of an earlier window starts again
        # Built once and run with a list of rows, which SQLAlchemy sends as one multi-row
        # statement ("insertmanyvalues") yet compiles once: a literal multi-row VALUES
        # would be compiled on every request, which costs more than SQLite takes to run it.
        self._upsert = stmt.on_conflict_do_update(
            index_elements=["scope", "key"],
            set_={"count": case((passed, 1), else_=count + 1),
                  "window_start": case((passed, stmt.excluded.window_start), else_=c.window_start)},
        ).returning(c.scope, c["key"], count, c.window_start)

    def window_start(self, now: datetime) -> datetime:
        """The start of the window `now` falls in."""
        elapsed = int((now - EPOCH).total_seconds())
        return EPOCH + timedelta(seconds=elapsed - elapsed % self.seconds)

    def take(self, conn: Connection, limits: Sequence[Limit], *, now: datetime) -> dict[Limit, int]:
        """Count one request against each of `limits` in `conn`'s transaction, with one
        statement, and return each count in the current window; raise RateLimited when
        one passes its limit (roll back then: the request is not counted).

        On PostgreSQL the counters' rows stay locked until the transaction ends, so
        requests sharing a counter are counted one after the other; on SQLite the write
        transaction already is. Rows are written in one order, so two requests never
        wait for each other's rows.
        """
        by_row = {(limit.scope, limit.key): limit for limit in limits}
        if not by_row:
            return {}
        start = self.window_start(now)
        rows = [{"scope": scope, "key": key, "window_start": start} for scope, key in sorted(by_row)]
        counts = {}
        for scope, key, count, window_start in conn.execute(self._upsert, rows):
            limit = by_row[(scope, key)]
            counts[limit] = count
            if count > limit.per_window:
                ends = window_start + timedelta(seconds=self.seconds)
                raise RateLimited(limit, max(1.0, (ends - now).total_seconds()))
        return counts

    def prune(self, conn: Connection, *, now: datetime) -> int:
        """Delete the counters of windows that have passed; return how many."""
        return conn.execute(delete(rate_windows).where(rate_windows.c.window_start < self.window_start(now))).rowcount


__all__ = ["FixedWindows", "Limit", "RateLimited"]
