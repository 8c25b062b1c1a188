"""Engines for SQLite and PostgreSQL, the read and write transactions every module
uses, and the one thing their SQL differs in: the dialect's INSERT for upserts.

Forking: an engine must not share pooled connections with a forked child. Engines
made here drop (without closing) their pooled connections in a child automatically;
`dispose_after_fork(engine)` does the same by hand, e.g. from gunicorn's `post_fork`.
"""
from __future__ import annotations

import functools
import os
import select
import sqlite3
import sys
import weakref
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

from gevent.monkey import get_original
from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError, StatementError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine, make_url

from kwai_bridge.db.sqlite import DEFERRED, WriterLockedConnection, sqlite_engine


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 16) -> Engine:
    """Build an engine for `sqlite:///path` or a PostgreSQL URL (driven by psycopg 3).

    On PostgreSQL the process keeps up to `pool_size` connections open and reuses them,
    and opens as many more for a burst (closed when returned). Each connection above the
    kept ones costs a new server process and its authentication: with SQLAlchemy's
    default of five, a web worker's sixth concurrent webhook opened and closed a
    connection every time, and under load that cost more than the webhooks did. A pooled
    connection is checked without a round trip as it is lent (`_refuse_hung_up`), and
    TCP keepalives find a server that vanished without closing.

    On both, an error never carries the statement's values (`hide_parameters`): they may
    be a shopper's email or phone, and errors reach the log."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql+psycopg":
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=pool_size, connect_args=KEEPALIVES,
                               hide_parameters=True)
        event.listen(engine, "checkout", _refuse_hung_up)
    elif parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        engine = sqlite_engine(parsed, sqlite_synchronous)
    else:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///path or postgresql://..."
        )
    os.register_at_fork(after_in_child=functools.partial(_dispose_in_child, weakref.ref(engine)))
    return engine


def database_errors() -> tuple[type[Exception], ...]:
    """What a failing database raises: SQLAlchemy's errors, and the driver's own on the
    paths that use its connection and cursor (`writing_cursor`, `autocommit_cursor`).
    psycopg's only once it is loaded (none can come before): a SQLite deployment does
    not load it, and a process must not load it before gevent patches the standard
    library (it picks how it waits when it is imported)."""
    loaded = sys.modules.get("psycopg")
    return (SQLAlchemyError, sqlite3.Error) + ((loaded.Error,) if loaded is not None else ())


def database_unavailable(exc: BaseException) -> bool:
    """Whether an error says the database could not be used (unreachable, restarting,
    its schema not as expected) rather than that it refused the values of a statement
    (a constraint, a value it cannot store): the first passes, the second stays with
    the row that caused it."""
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return False  # a value refused before it was sent (a naive datetime, say)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    refused: tuple[type[BaseException], ...] = (sqlite3.DataError, sqlite3.IntegrityError)
    loaded = sys.modules.get("psycopg")
    if loaded is not None:
        refused += (loaded.DataError, loaded.IntegrityError)
    return isinstance(exc, database_errors()) and not isinstance(exc, refused)


#: libpq's TCP keepalives: a server that vanished without closing its connections (a
#: host gone, a network cut) is noticed within about a minute, not hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


# The system's own poll, also in a gevent worker: a check that must not wait needs no hub.
_poll = get_original("select", "poll")


def _refuse_hung_up(dbapi_connection, connection_record, connection_proxy) -> None:
    """A pooled connection the server has closed is replaced before it is lent.

    An idle connection has nothing to read: when its socket is readable, the server hung
    up (restarted, or ended the backend) and what waits is the end of the stream. One
    `poll` with no timeout tells, where SQLAlchemy's pre-ping spent a round trip
    (`SELECT 1`) on every checkout: a quarter of a webhook's CPU on the request path.
    The pool takes a new connection when this raises."""
    gone = _gone(dbapi_connection)
    if gone is not None:
        raise DisconnectionError(gone)


def _gone(dbapi_connection) -> str | None:
    """Why an idle connection cannot be lent (closed here, or the server hung up:
    `_refuse_hung_up`), or None when it can."""
    if dbapi_connection.closed:
        return "this pooled connection is closed"
    poll = _poll()
    poll.register(dbapi_connection.fileno(), select.POLLIN)
    return "the server closed this pooled connection" if poll.poll(0) else None


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL; None for any other database."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite") and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database)
    return None


def _dispose_in_child(ref: "weakref.ref[Engine]") -> None:
    engine = ref()
    if engine is not None:
        dispose_after_fork(engine)


def dispose_after_fork(engine: Engine) -> None:
    """Forget (without closing) the pooled connections a forked child inherited."""
    kept = _autocommitted.get(engine)
    if kept is not None:
        kept.forget()
    engine.dispose(close=False)


def upsert_insert(dialect: Dialect):
    """The dialect's own `insert`, whose statements have `on_conflict_do_*` (both
    backends spell the upsert alike)."""
    return postgresql.insert if dialect.name == "postgresql" else sqlite.insert


@contextmanager
def writing_cursor(engine: Engine) -> Iterator[Any]:
    """A write transaction on the driver's own connection and cursor, committed when the
    block ends and rolled back if it raises.

    For the webhook path, which runs a few prepared inserts per request: the SQL
    expression layer's connection and transaction objects cost more CPU than SQLite
    takes to run the inserts. The connection still comes from the engine's pool (checked
    as it is lent on PostgreSQL); on SQLite the transaction queues on the writer lock and
    starts with BEGIN IMMEDIATE, like every other write.
    """
    fairy = engine.raw_connection()
    try:
        dbapi_connection = fairy.dbapi_connection
        if isinstance(dbapi_connection, WriterLockedConnection):
            dbapi_connection.begin_write()
        cursor = dbapi_connection.cursor()
        try:
            yield cursor
        except BaseException:
            dbapi_connection.rollback()
            raise
        finally:
            cursor.close()
        dbapi_connection.commit()
    finally:
        fairy.close()


@contextmanager
def autocommit_cursor(engine: Engine) -> Iterator[Any]:
    """A cursor on one of the pool's PostgreSQL connections in autocommit: each statement
    is its own transaction, committed (and flushed to the WAL) before it returns. For the
    webhook path's single statement (kwai_bridge.outbox.single): no BEGIN and no COMMIT
    round trip. The connection is kept for the next call (`_Autocommitted`)."""
    kept = _autocommitted.get(engine)
    if kept is None:
        kept = _autocommitted.setdefault(engine, _Autocommitted(engine))
    fairy = kept.take(engine)
    try:
        cursor = fairy.dbapi_connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
    finally:
        kept.give_back(fairy)


class _Autocommitted:
    """The pool's connections `autocommit_cursor` keeps between calls, in autocommit.

    Taking a connection from SQLAlchemy's pool and giving it back (its queue and lock,
    the connection's wrapper, the rollback on return, autocommit switched on and off)
    cost a webhook 20 µs of CPU, a fifth of its statement's round trip; taken from a
    list, with its cursor, about 6. The connections stay the pool's, counted as checked
    out, so the pool's limit still bounds how many the process opens; up to half that
    limit is kept here, the rest goes back to the pool for every other use. Each is checked
    as it is taken, as the pool checks (`_gone`), and one that failed in a way that
    leaves it unusable (closed, broken, or left inside a statement) is invalidated: the
    pool opens another. `engine.dispose()` closes them; a forked child forgets them
    without closing (`forget`): they are its parent's.

    As with any connection lent by SQLAlchemy's pool, an engine with connections kept
    here stays alive until `engine.dispose()` (a process's engine lives as long as the
    process). It holds no reference to its engine: once disposed, a dropped engine goes
    with it."""

    def __init__(self, engine: Engine) -> None:
        self._keep = engine.pool.size()
        self._idle: list[Any] = []
        event.listen(engine, "engine_disposed", self._close)

    def take(self, engine: Engine):
        while self._idle:
            try:
                fairy = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if _gone(fairy.dbapi_connection) is None:
                return fairy
            fairy.invalidate()
        fairy = engine.raw_connection()
        fairy.dbapi_connection.autocommit = True
        return fairy

    def give_back(self, fairy) -> None:
        connection = fairy.dbapi_connection
        # Not idle also when closed or broken (psycopg then says UNKNOWN).
        if connection.info.transaction_status != _IDLE:
            fairy.invalidate()
        elif len(self._idle) < self._keep:
            self._idle.append(fairy)
        else:
            connection.autocommit = False
            fairy.close()

    def forget(self) -> None:
        """Drop the connections without a word to the server (in a forked child): detached
        from the pool, no wrapper returns them to it, and psycopg does not close a
        connection another process opened."""
        idle, self._idle = self._idle, []
        for fairy in idle:
            fairy.detach()

    def _close(self, engine: Engine) -> None:
        idle, self._idle = self._idle, []
        for fairy in idle:
            fairy.invalidate()


#: Each engine's `_Autocommitted`, made on its first `autocommit_cursor`.
_autocommitted: "weakref.WeakKeyDictionary[Engine, _Autocommitted]" = weakref.WeakKeyDictionary()
#: psycopg's transaction status of a connection between statements (pq.TransactionStatus.IDLE).
_IDLE = 0


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads: on SQLite a deferred BEGIN, so readers never queue on writers."""
    with engine.connect() as conn:
        conn.execution_options(**{DEFERRED: True})
        yield conn
