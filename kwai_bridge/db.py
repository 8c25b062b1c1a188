"""The database: engines for SQLite and PostgreSQL, the tables, and versioned migrations.

One code path serves both backends (SQLAlchemy Core). SQLite runs in WAL mode with
FULL durability by default (every commit is on disk before it returns) and opens every
write transaction with `BEGIN IMMEDIATE`, so several processes (web workers and a
dispatcher) queue on the write lock instead of failing with "database is locked" when
a read transaction tries to upgrade.

Forking: an engine must not share pooled connections with a forked child. Engines
made here drop (without closing) their pooled connections in a child automatically;
`dispose_after_fork(engine)` does the same by hand, e.g. from gunicorn's `post_fork`.
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import timezone
from typing import Any, Callable, Iterator

from sqlalchemy import (
    BigInteger, CheckConstraint, Column, DateTime, ForeignKey, Index, Integer,
    LargeBinary, MetaData, PrimaryKeyConstraint, String, Table, Text, UniqueConstraint,
    create_engine, event, exists, inspect, select, text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
BUSY_TIMEOUT_MS = 5000
#: Events read per batch when migration 2 fills `event_identifiers`.
_BACKFILL_BATCH = 500
# Any constant will do; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x6B776169  # "kwai"
# Execution option asking for a plain (deferred) BEGIN on SQLite: see `reading()`.
_DEFERRED = "kwai_bridge_deferred"

EVENT_STATUSES = ("unattributed", "skipped", "pending", "sending", "sent", "held", "dead")
# `privacy`: a data-request or redaction topic, handled at once and kept as a record.
DELIVERY_OUTCOMES = ("queued", "ignored", "failed", "reprocessed", "privacy")


class SchemaError(Exception):
    """The database schema is not the one this release needs."""


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on both backends; a naive datetime is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        # SQLite keeps text without an offset; every value is UTC so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


_ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

deliveries = Table(
    "deliveries", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("store_id", String, nullable=False),
    Column("platform", String, nullable=False),
    Column("topic", String, nullable=False),
    Column("delivery_key", String, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("outcome", String, nullable=False),
    Column("error", Text),
    Column("body", LargeBinary),
    Column("headers", Text),
    UniqueConstraint("store_id", "delivery_key", name="uq_deliveries_store_key"),
    CheckConstraint(
        "outcome IN (%s)" % ", ".join(f"'{o}'" for o in DELIVERY_OUTCOMES),
        name="ck_deliveries_outcome",
    ),
    Index("ix_deliveries_received_at", "received_at"),
)

events = Table(
    "events", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("store_id", String, nullable=False),
    Column("platform", String, nullable=False),
    Column("business_key", String, nullable=False),
    Column("event_name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("event", Text, nullable=False),
    Column("click_source", String),
    Column("identifiers", Text),
    Column("skip_reason", Text),
    Column("value_note", Text),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("lease_until", UTCDateTime),
    Column("lease_owner", String),
    Column("last_error", Text),
    Column("last_result", Integer),
    Column("last_response", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("delivery_id", _ID, ForeignKey("deliveries.id", ondelete="SET NULL")),
    UniqueConstraint("store_id", "business_key", name="uq_events_store_business_key"),
    CheckConstraint(
        "status IN (%s)" % ", ".join(f"'{s}'" for s in EVENT_STATUSES),
        name="ck_events_status",
    ),
    Index("ix_events_status_due", "status", "next_attempt_at"),
    Index("ix_events_store_status", "store_id", "status"),
    Index("ix_events_delivery", "delivery_id"),
)

high_water = Table(
    "high_water", metadata,
    Column("store_id", String, nullable=False),
    Column("key", String, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("store_id", "key", name="pk_high_water"),
)

#: What attribution can find an event by (`Conversion.identifiers`), one row per kind,
#: so that a click can be matched to events with an index instead of scanning JSON.
event_identifiers = Table(
    "event_identifiers", metadata,
    Column("event_id", _ID, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("store_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    PrimaryKeyConstraint("event_id", "kind", name="pk_event_identifiers"),
    Index("ix_event_identifiers_lookup", "store_id", "kind", "value"),
)

#: The click store: per store and shopper identifier, the latest Kwai click id and when it
#: was clicked. `order_key` is kept with an `order_id` entry (WooCommerce's order key).
clicks = Table(
    "clicks", metadata,
    Column("store_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    Column("click_id", String, nullable=False),
    Column("clicked_at", UTCDateTime, nullable=False),
    Column("order_key", String),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("store_id", "kind", "value", name="pk_clicks"),
    Index("ix_clicks_store_clicked_at", "store_id", "clicked_at"),
)


# -- engines -------------------------------------------------------------------------
def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """Build an engine for `sqlite:///path` or a PostgreSQL URL (driven by psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql+psycopg":
        engine = create_engine(parsed, pool_pre_ping=True)
    elif parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        engine = _sqlite_engine(parsed, sqlite_synchronous)
    else:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}: "
            "use sqlite:///path or postgresql://..."
        )
    os.register_at_fork(after_in_child=functools.partial(_dispose_in_child, weakref.ref(engine)))
    return engine


def _sqlite_engine(parsed, synchronous: str) -> Engine:
    sync = synchronous.upper()
    if sync not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"sqlite synchronous must be FULL or NORMAL, not {synchronous!r}")
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        raise ValueError("SQLite needs a file path (sqlite:///path/to/file.db)")
    if sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or newer is needed")
    # SQLite names the WAL after the database file with symlinks resolved; the writer
    # lock too, so that every process reaching the file by any path shares it.
    real_path = os.path.realpath(parsed.database)
    lock_path = real_path + "-writer.lock"
    engine = create_engine(parsed, connect_args={"factory": _WriterLockedConnection})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # pysqlite must not emit its own BEGIN: `_on_begin` does it, with the right mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _set_wal(cursor)
            # FULL is SQLite's NORMAL plus a sync of the WAL after every commit; the
            # connection does that sync itself, after letting go of the writer lock.
            cursor.execute("PRAGMA synchronous=NORMAL")
            if sync == "FULL":
                dbapi_connection.sync_after_commit(real_path + "-wal")
            dbapi_connection.lock_path = lock_path
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get(_DEFERRED, False):
            conn.exec_driver_sql("BEGIN")
            return
        conn.connection.dbapi_connection.begin_write()

    return engine


_held_here = threading.local()


class _WriterLockedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on an advisory file lock.

    SQLite's own busy handler retries a locked database after sleeping 1, 2, 5, 10 ms
    and longer; with several gunicorn workers and the dispatcher writing, those sleeps,
    not the work, set the pace. A process blocked in `flock` wakes as soon as the holder
    lets go (measured: 0.74 of the minimal durable receiver's rate against 0.45 without
    it). The lock is taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK;
    the kernel releases it when a holder dies. Holders are short write transactions, so
    the wait is not bounded by a timeout; a thread that already holds the lock through
    another connection is refused at once instead of waiting for itself.
    """

    lock_path: str = ""
    _lock_fd: int | None = None  # the lock file, kept open with the connection
    _locked = False
    _wal_path: str | None = None
    _wal_fd: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finalizers: list[weakref.finalize] = []

    def begin_write(self) -> None:
        """Queue for the writer lock, then BEGIN IMMEDIATE (straight to the driver: this
        runs for every write)."""
        self.acquire_writer_lock()
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.release_writer_lock()
            raise

    def acquire_writer_lock(self) -> None:
        if self._locked:
            return
        if getattr(_held_here, "count", 0):
            raise sqlite3.OperationalError(
                "database is locked: this thread is already inside a write transaction")
        if self._lock_fd is None:
            self._lock_fd = self._keep_open(self.lock_path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True
        _held_here.count = getattr(_held_here, "count", 0) + 1

    def release_writer_lock(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            _held_here.count -= 1

    def sync_after_commit(self, wal_path: str) -> None:
        """Make every write commit durable: sync the WAL file once the commit is written."""
        self._wal_path = wal_path

    def commit(self) -> None:
        wrote = self._locked
        try:
            super().commit()
        finally:
            self.release_writer_lock()
        if wrote and self._wal_path is not None:
            # SQLite's FULL does this sync inside COMMIT, while every other writer waits;
            # done here, once the lock is free, the next writer's work overlaps it, and
            # syncs of several writers that land together cost the disk one flush. The
            # commit has been written to the WAL, and a checkpoint that copies it away
            # first syncs it, so once this returns the transaction survives a power cut.
            # SQLite removes the WAL file only when its last connection closes, so the
            # descriptor, opened once, stays this connection's WAL.
            if self._wal_fd is None:
                self._wal_fd = self._keep_open(self._wal_path, os.O_RDONLY)
                # The WAL file may be new: make its directory entry durable too, once.
                directory = os.open(os.path.dirname(self._wal_path), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            os.fdatasync(self._wal_fd)

    def _keep_open(self, path: str, flags: int) -> int:
        """Open `path` for as long as this connection lives: closed by `close()`, or when
        the connection is collected without it (a pool that forgets its connections
        in a forked child does not close them)."""
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        self._finalizers.append(weakref.finalize(self, os.close, fd))
        return fd

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()
            self._lock_fd = self._wal_fd = None
            for close in self._finalizers:
                close()


def _set_wal(cursor: sqlite3.Cursor) -> None:
    # Turning a new database to WAL needs an exclusive lock, and SQLite answers "locked"
    # at once, without its busy handler, while another process holds one: wait here.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode.lower() != "wal":
        raise RuntimeError(f"SQLite could not switch to WAL mode (journal_mode is {mode})")


def _dispose_in_child(ref: "weakref.ref[Engine]") -> None:
    engine = ref()
    if engine is not None:
        dispose_after_fork(engine)


def dispose_after_fork(engine: Engine) -> None:
    """Forget (without closing) the pooled connections a forked child inherited."""
    engine.dispose(close=False)


@contextmanager
def writing_cursor(engine: Engine) -> Iterator[Any]:
    """A write transaction on the driver's own connection and cursor, committed when the
    block ends and rolled back if it raises.

    For the webhook path, which runs a few prepared inserts per request: the SQL
    expression layer's connection and transaction objects cost more CPU than SQLite
    takes to run the inserts. The connection still comes from the engine's pool (with
    its pre-ping on PostgreSQL); on SQLite the transaction queues on the writer lock and
    starts with BEGIN IMMEDIATE, like every other write.
    """
    fairy = engine.raw_connection()
    try:
        dbapi_connection = fairy.dbapi_connection
        if isinstance(dbapi_connection, _WriterLockedConnection):
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
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads: on SQLite a deferred BEGIN, so readers never queue on writers."""
    with engine.connect() as conn:
        conn.execution_options(**{_DEFERRED: True})
        yield conn


# -- migrations ----------------------------------------------------------------------
def _v1(conn: Connection) -> None:
    # Version 1 is the first release's schema, which `metadata` still describes. When a
    # later version changes a table, copy today's definitions in here first: a released
    # migration must keep creating exactly what it created.
    metadata.create_all(conn, tables=[deliveries, events, high_water], checkfirst=True)


def _v2(conn: Connection) -> None:
    # The click store and the identifier index, then the index filled from the events
    # already stored (their identifiers JSON), in batches; rows already there are kept.
    metadata.create_all(conn, tables=[event_identifiers, clicks], checkfirst=True)
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    e, ei = events.c, event_identifiers.c
    last = 0
    while True:
        rows = conn.execute(
            select(e.id, e.store_id, e.identifiers)
            .where(e.id > last, e.identifiers.is_not(None), ~exists().where(ei.event_id == e.id))
            .order_by(e.id).limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        values = [
            {"event_id": row.id, "store_id": row.store_id, "kind": kind, "value": value}
            for row in rows for kind, value in _identifier_items(row.identifiers)
        ]
        if values:
            conn.execute(insert(event_identifiers).values(values).on_conflict_do_nothing())
        last = rows[-1].id


def _identifier_items(raw: str | None) -> list[tuple[str, str]]:
    """(kind, value) pairs of an events.identifiers JSON text; anything else is skipped."""
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return []
    if not isinstance(found, dict):
        return []
    return [(k, v) for k, v in found.items() if isinstance(k, str) and isinstance(v, str) and v]


#: Append-only: (version, function). Each function must be safe to run on a database
#: that already has its changes (`checkfirst`, `IF NOT EXISTS`).
MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1), (2, _v2))


def _current(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    return conn.execute(select(schema_version.c.version)).scalar()


def schema_state(engine: Engine) -> tuple[int | None, int]:
    """Return (the database's schema version or None when empty, the version this release needs)."""
    with reading(engine) as conn:
        return _current(conn), SCHEMA_VERSION


def migrate(engine: Engine) -> int:
    """Bring the schema up to SCHEMA_VERSION in one transaction and return the version."""
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE serialises migrators
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = _current(conn)
        if current is None:
            schema_version.create(conn, checkfirst=True)
        elif current > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema is at version {current}, newer than this release "
                f"(version {SCHEMA_VERSION}): upgrade kwai-bridge"
            )
        start = current or 0
        for version, step in MIGRATIONS:
            if version > start:
                log.info("migrating the database schema to version %d", version)
                step(conn)
        if current is None:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif current < SCHEMA_VERSION:
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Migrate when allowed (SQLite), else refuse to run on a schema that is not current."""
    if auto_migrate:
        migrate(engine)
        return
    current, latest = schema_state(engine)
    if current is None or current < latest:
        shown = "0 (empty)" if current is None else str(current)
        raise SchemaError(
            f"database schema is at version {shown}, this release needs {latest}: "
            "run `kwai-bridge migrate`"
        )
    if current > latest:
        raise SchemaError(
            f"database schema is at version {current}, newer than this release "
            f"(version {latest}): upgrade kwai-bridge"
        )

