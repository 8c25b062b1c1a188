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
from typing import Any, Sequence

from sqlalchemy import bindparam, case, delete
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


def _counting(stmt):
    """`stmt` (an insert of one count into `rate_windows`) as the upsert that counts."""
    c = rate_windows.c
    count = c["count"]  # by name: `.count` would be the collection's method
    passed = c.window_start < stmt.excluded.window_start  # a row of an earlier window starts again
    return stmt.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={"count": case((passed, 1), else_=count + 1),
              "window_start": case((passed, stmt.excluded.window_start), else_=c.window_start)},
    ).returning(c.scope, c["key"], count, c.window_start)


class FixedWindows:
    """The counters of `rate_windows`, over windows of `seconds`."""

    def __init__(self, dialect: Dialect, *, seconds: int = 60) -> None:
        self.seconds = seconds
        # Built once and run with a list of rows, which SQLAlchemy sends as one multi-row
        # statement ("insertmanyvalues") yet compiles once: a literal multi-row VALUES
        # would be compiled on every request, which costs more than SQLite takes to run it.
        self._upsert = _counting(upsert_insert(dialect)(rate_windows).values(count=1))
        # The same upsert for one row, compiled once for a driver's cursor (`take_on_cursor`).
        one = _counting(upsert_insert(dialect)(rate_windows).values(
            scope=bindparam("scope"), key=bindparam("key"), window_start=bindparam("window_start"), count=1))
        compiled = one.compile(dialect=dialect)
        self._cursor_sql = compiled.string
        self._cursor_names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        self._cursor_constants = dict(compiled.params)  # the statement's own numbers (1, count + 1)
        self._bind_start = rate_windows.c.window_start.type.dialect_impl(dialect).bind_processor(dialect)

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

    def take_on_cursor(self, cursor: Any, limits: Sequence[Limit], *, now: datetime) -> None:
        """`take` on a driver cursor inside a write transaction of another module (see
        `kwai_bridge.db.writing_cursor`), so that a request's counters and its writes
        commit once; RateLimited when one passes its limit (the transaction then rolls
        back: the request is not counted)."""
        start = self.window_start(now)
        bound_start = self._bind_start(start) if self._bind_start else start
        for limit in sorted(limits, key=lambda item: (item.scope, item.key)):
            values = {**self._cursor_constants, "scope": limit.scope, "key": limit.key, "window_start": bound_start}
            params = tuple(values[n] for n in self._cursor_names) if self._cursor_names else values
            cursor.execute(self._cursor_sql, params)
            count = cursor.fetchone()[2]
            if count > limit.per_window:
                ends = start + timedelta(seconds=self.seconds)
                raise RateLimited(limit, max(1.0, (ends - now).total_seconds()))

    def prune(self, conn: Connection, *, now: datetime) -> int:
        """Delete the counters of windows that have passed; return how many."""
        return conn.execute(delete(rate_windows).where(rate_windows.c.window_start < self.window_start(now))).rowcount


__all__ = ["FixedWindows", "Limit", "RateLimited"]
