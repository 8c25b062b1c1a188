"""kwai_bridge.db: engines, pragmas, the UTC column type and versioned migrations, on both backends."""
from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import weakref
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from kwai_bridge import db
from kwai_bridge.db import sqlite as sqlite_db
from kwai_bridge.db import (SCHEMA_VERSION, SchemaError, autocommit_cursor, ensure_schema, make_engine, migrate,
                            schema_state)
from tests.threads import at_once

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _version_rows(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(db.schema_version.c.version)).scalars())


# -- migrations ----------------------------------------------------------------------
def test_migrations_are_numbered_one_by_one_up_to_schema_version():
    assert [v for v, _ in db.MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def test_migrate_creates_the_tables_and_is_idempotent(engine):
    assert schema_state(engine) == (None, SCHEMA_VERSION)
    assert migrate(engine) == SCHEMA_VERSION
    assert migrate(engine) == SCHEMA_VERSION
    assert schema_state(engine) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert _version_rows(engine) == [SCHEMA_VERSION]
    names = set(inspect(engine).get_table_names())
    assert {"schema_version", "deliveries", "events", "high_water"} <= names
    indexes = {i["name"] for i in inspect(engine).get_indexes("events")}
    assert {"ix_events_status_due", "ix_events_store_status_id", "ix_events_status_id"} <= indexes


def test_two_processes_migrating_at_once_both_succeed(database_url):
    engines = [make_engine(database_url) for _ in range(2)]
    results, errors = at_once(migrate, engines, timeout=30)
    assert errors == []
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]
    assert _version_rows(engines[0]) == [SCHEMA_VERSION]
    for e in engines:
        e.dispose()


def test_ensure_schema_refuses_an_empty_database_and_writes_nothing(engine):
    with pytest.raises(SchemaError, match=rf"version 0 \(empty\), this release needs {db.SCHEMA_VERSION}: run `kwai-bridge migrate`"):
        ensure_schema(engine, auto_migrate=False)
    assert schema_state(engine) == (None, SCHEMA_VERSION)
    assert "events" not in inspect(engine).get_table_names()


def test_ensure_schema_refuses_an_old_schema(engine):
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(db.schema_version.update().values(version=0))
    with pytest.raises(SchemaError, match=rf"at version 0, this release needs {db.SCHEMA_VERSION}: run `kwai-bridge migrate`"):
        ensure_schema(engine, auto_migrate=False)
    ensure_schema(engine, auto_migrate=True)
    assert schema_state(engine) == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert _version_rows(engine) == [SCHEMA_VERSION]


def test_a_schema_newer_than_the_release_is_refused_even_with_auto_migrate(engine):
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(db.schema_version.update().values(version=SCHEMA_VERSION + 1))
    for auto in (True, False):
        with pytest.raises(SchemaError, match="newer than this release"):
            ensure_schema(engine, auto_migrate=auto)


def test_ensure_schema_with_auto_migrate_builds_an_empty_database(engine):
    ensure_schema(engine, auto_migrate=True)
    ensure_schema(engine, auto_migrate=False)
    assert schema_state(engine) == (SCHEMA_VERSION, SCHEMA_VERSION)


def test_migration_3_upgrades_a_release_2_database_keeping_its_rows(engine):
    from kwai_bridge.db import migrations

    with engine.begin() as conn:  # a database as release 2 left it: without v3's columns and tables
        migrations._v1(conn)
        migrations._v2(conn)
        conn.execute(text("DROP INDEX uq_deliveries_store_body"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN body_sha256"))
        conn.execute(text("ALTER TABLE events DROP COLUMN click_note"))
        db.schema_version.create(conn)
        conn.execute(db.schema_version.insert().values(version=2))
        conn.execute(text("INSERT INTO deliveries (store_id, platform, topic, delivery_key, received_at, outcome) "
                          "VALUES ('s', 'shopify', 'orders/paid', 'old', '2026-11-01 10:00:00', 'queued')"))
    assert not inspect(engine).has_table("rate_windows")
    assert migrate(engine) == SCHEMA_VERSION
    assert migrate(engine) == SCHEMA_VERSION  # a second run changes nothing
    assert {"body_sha256"} <= {c["name"] for c in inspect(engine).get_columns("deliveries")}
    assert {"click_note"} <= {c["name"] for c in inspect(engine).get_columns("events")}
    assert inspect(engine).has_table("rate_windows") and inspect(engine).has_table("heartbeats")
    assert {"stores", "store_generation", "users", "api_tokens", "audit_log", "event_attempts"} <= set(
        inspect(engine).get_table_names())  # and v4's on top
    with engine.begin() as conn:
        row = conn.execute(select(db.deliveries.c.delivery_key, db.deliveries.c.body_sha256)).one()  # kept, hash unknown
        assert tuple(row) == ("old", None)
        values = dict(store_id="s", platform="shopify", topic="orders/paid", received_at=T0, outcome="queued")
        conn.execute(db.deliveries.insert().values(delivery_key="a", body_sha256="f" * 64, **values))
        conn.execute(db.deliveries.insert().values(delivery_key="b", body_sha256=None, **values))
    with pytest.raises(IntegrityError):  # one body per store, whatever its delivery key
        with engine.begin() as conn:
            conn.execute(db.deliveries.insert().values(delivery_key="c", body_sha256="f" * 64, **values))


@pytest.mark.postgres
def test_migration_10_compresses_new_bodies_with_lz4_on_postgresql(postgres_url):
    from kwai_bridge.db.migrations import postgres_has_lz4

    engine = make_engine(postgres_url)
    with engine.begin() as conn:  # a database as version 9 left it
        for version, step in db.MIGRATIONS:
            if version <= 9:
                step(conn)
        db.schema_version.create(conn)
        conn.execute(db.schema_version.insert().values(version=9))
        if not postgres_has_lz4(conn):
            engine.dispose()
            pytest.skip("this PostgreSQL server is built without lz4: bodies stay compressed with pglz")
    values = dict(store_id="s", platform="shopify", topic="orders/paid", received_at=T0, outcome="queued")
    # an order-like body long enough to be compressed (over PostgreSQL's 2 KB)
    body = json.dumps({"line_items": [{"id": n, "title": f"item {n}", "price": "9.95"} for n in range(300)]}).encode()
    with engine.begin() as conn:
        conn.execute(db.deliveries.insert().values(delivery_key="before", body=body, **values))
    assert migrate(engine) == SCHEMA_VERSION
    assert migrate(engine) == SCHEMA_VERSION  # a second run changes nothing
    with engine.begin() as conn:
        conn.execute(db.deliveries.insert().values(delivery_key="after", body=body, **values))
        stored = conn.execute(text(
            "SELECT delivery_key, pg_column_compression(body), body FROM deliveries ORDER BY id")).all()
    assert [tuple(row) for row in stored] == [("before", "pglz", body), ("after", "lz4", body)]
    engine.dispose()


# -- the UTC column ------------------------------------------------------------------
@pytest.mark.parametrize("offset_hours", [0, 5.5, -3])
def test_datetimes_come_back_aware_utc(engine, offset_hours):
    migrate(engine)
    tz = timezone(timedelta(hours=offset_hours))
    written = T0.astimezone(tz).replace(microsecond=123456)
    with engine.begin() as conn:
        conn.execute(db.deliveries.insert().values(
            store_id="s", platform="shopify", topic="orders/paid", delivery_key="k",
            received_at=written, outcome="queued"))
    with engine.connect() as conn:
        read = conn.execute(select(db.deliveries.c.received_at)).scalar_one()
        earlier = conn.execute(select(func.count()).select_from(db.deliveries).where(
            db.deliveries.c.received_at < T0 + timedelta(seconds=1))).scalar_one()
    assert read == written
    assert read.tzinfo == timezone.utc
    assert earlier == 1


def test_a_naive_datetime_is_refused(engine):
    migrate(engine)
    with pytest.raises(StatementError, match="naive datetime"):
        with engine.begin() as conn:
            conn.execute(db.deliveries.insert().values(
                store_id="s", platform="shopify", topic="t", delivery_key="k",
                received_at=datetime(2025, 1, 1), outcome="queued"))


# -- engines -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, drivername",
    [
        ("postgres://u@db.example:5432/app", "postgresql+psycopg"),
        ("postgresql://u@db.example/app", "postgresql+psycopg"),
        ("postgresql+psycopg://u@db.example/app", "postgresql+psycopg"),
        ("sqlite:///relative.db", "sqlite"),
        ("sqlite:////abs/path.db", "sqlite"),
    ],
)
def test_urls_are_accepted_and_postgres_uses_psycopg(url, drivername):
    engine = make_engine(url)  # no connection is made here
    assert engine.url.drivername == drivername


@pytest.mark.postgres
def test_postgres_connections_are_kept_for_as_many_concurrent_requests_as_the_pool_size(postgres_url):
    # Twelve requests at once, three times: each round reuses the same twelve server
    # processes. (SQLAlchemy's default pool kept five and opened and closed the other
    # seven every round: a new server process and its authentication per webhook.)
    engine = make_engine(postgres_url)  # the default keeps 16
    pids: list[int] = []
    for _ in range(3):
        held = [engine.connect() for _ in range(12)]
        pids += [conn.exec_driver_sql("select pg_backend_pid()").scalar() for conn in held]
        for conn in held:
            conn.close()
    engine.dispose()
    assert len(pids) == 36 and len(set(pids)) == 12


@pytest.mark.postgres
def test_pooled_connections_the_server_ended_are_replaced_without_an_error(postgres_url):
    # The server ends every pooled connection (a restart, an administrator): the next
    # webhook, transaction and autocommit statement each get a new connection and succeed.
    # Without a check as the pool lends a connection, each failed with "terminating
    # connection due to administrator command" instead.
    import psycopg
    from kwai_bridge.db import writing_cursor

    engine = make_engine(postgres_url)
    held = [engine.connect() for _ in range(3)]
    before = {conn.exec_driver_sql("select pg_backend_pid()").scalar() for conn in held}
    for conn in held:
        conn.close()
    with autocommit_cursor(engine) as cursor:  # kept aside for the next autocommit statement
        cursor.execute("select pg_backend_pid()")
        before.add(cursor.fetchone()[0])
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) as pid", (sorted(before),))
        _wait_until_ended(admin, before)
    after = set()
    with engine.connect() as conn:
        after.add(conn.exec_driver_sql("select pg_backend_pid()").scalar())
    with writing_cursor(engine) as cursor:
        cursor.execute("select pg_backend_pid()")
        after.add(cursor.fetchone()[0])
    with autocommit_cursor(engine) as cursor:
        cursor.execute("select pg_backend_pid()")
        after.add(cursor.fetchone()[0])
    engine.dispose()
    assert after and not after & before


def _wait_until_ended(admin, pids: set[int]) -> None:
    """Wait until the server's backends `pids` are gone from its list (10 s on a busy machine)."""
    for _ in range(1000):
        if not admin.execute("select count(*) from pg_stat_activity where pid = any(%s)",
                             (sorted(pids),)).fetchone()[0]:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"backends {sorted(pids)} did not end")


def _backend(cursor) -> int:
    cursor.execute("select pg_backend_pid()")
    return cursor.fetchone()[0]


@pytest.mark.postgres
def test_autocommit_connections_are_kept_in_autocommit_within_the_pools_limit(postgres_url):
    # The webhook's statement takes its connection from a list kept beside the pool, not
    # through the pool (a fifth of the statement's CPU): kept in autocommit, counted by
    # the pool as lent, at most as many as the pool keeps, closed with the engine.
    import psycopg
    from contextlib import ExitStack

    engine = make_engine(postgres_url, pool_size=2)  # the pool lends at most 4
    with autocommit_cursor(engine) as cursor:
        first = _backend(cursor)
        assert cursor.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed
    with autocommit_cursor(engine) as cursor:
        assert _backend(cursor) == first
    assert (engine.pool.checkedout(), engine.pool.checkedin()) == (1, 0)  # kept aside, still the pool's
    with ExitStack() as stack:
        cursors = [stack.enter_context(autocommit_cursor(engine)) for _ in range(4)]
        seen = {_backend(cursor) for cursor in cursors}
        assert len(seen) == 4 and first in seen
        assert engine.pool.checkedout() == 4
    # two kept for the next statements; the other two back in the pool, out of autocommit
    assert (engine.pool.checkedout(), engine.pool.checkedin()) == (2, 2)
    with engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False
    engine.dispose()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        _wait_until_ended(admin, seen)


@pytest.mark.postgres
def test_an_autocommit_connection_survives_a_failed_statement_and_is_replaced_when_broken(postgres_url):
    import psycopg

    engine = make_engine(postgres_url)
    with pytest.raises(psycopg.errors.DivisionByZero):
        with autocommit_cursor(engine) as cursor:
            first = _backend(cursor)
            cursor.execute("select 1 / 0")
    with autocommit_cursor(engine) as cursor:
        assert _backend(cursor) == first  # a refused statement leaves the connection usable
    with pytest.raises(psycopg.OperationalError):
        with autocommit_cursor(engine) as cursor:
            cursor.execute("select pg_terminate_backend(pg_backend_pid())")
    assert engine.pool.checkedout() == 0  # the broken one was given up as it came back, not kept
    with autocommit_cursor(engine) as cursor:
        assert _backend(cursor) != first
    assert engine.pool.checkedout() == 1
    engine.dispose()


@pytest.mark.postgres
def test_a_disposed_engine_is_collected_with_its_autocommit_connections(postgres_url):
    # What keeps the connections for autocommit statements must not keep their engine
    # alive once it is disposed (a process that makes engines, a test suite, would keep
    # every one), and its connections are closed.
    import psycopg

    engine = make_engine(postgres_url)
    with autocommit_cursor(engine) as cursor:
        backend = _backend(cursor)
    engine.dispose()
    collected = weakref.ref(engine)
    del engine, cursor
    gc.collect()
    assert collected() is None
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        _wait_until_ended(admin, {backend})


@pytest.mark.postgres
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_use_or_end_its_parents_autocommit_connection(postgres_url):

    engine = make_engine(postgres_url)
    with autocommit_cursor(engine) as cursor:
        parents = _backend(cursor)
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            gc.collect()  # the parent's connection, now dropped, must not be closed under it
            with autocommit_cursor(engine) as cursor:
                code = 0 if _backend(cursor) != parents else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with autocommit_cursor(engine) as cursor:
        assert _backend(cursor) == parents  # the parent's connection survived the child
    engine.dispose()


def test_database_errors_do_not_carry_the_values_of_the_statement(engine):
    # Statements bind shoppers' emails and phones (identifiers, clicks): an error that
    # reaches the log must not repeat them.
    with pytest.raises(StatementError) as raised:
        with engine.connect() as conn:
            conn.execute(text("select no_such_column from deliveries where delivery_key = :key"),
                         {"key": "shopper@example.com"})
    assert "shopper@example.com" not in str(raised.value)
    assert "no_such_column" in str(raised.value)  # what went wrong is still said


def test_the_pool_size_setting_reaches_the_engine():
    from kwai_bridge.config import ConfigError
    from kwai_bridge.settings import settings_from_env

    assert settings_from_env({}).database_pool_size == 16
    assert settings_from_env({"KWAI_BRIDGE_DATABASE_POOL_SIZE": "40"}).database_pool_size == 40
    with pytest.raises(ConfigError, match="DATABASE_POOL_SIZE"):
        settings_from_env({"KWAI_BRIDGE_DATABASE_POOL_SIZE": "0"})
    engine = make_engine("postgresql://u@db.example/app", pool_size=40)
    assert (engine.pool.size(), engine.pool._max_overflow) == (40, 40)


@pytest.mark.parametrize(
    "url, kwargs, message",
    [
        ("mysql://u@h/db", {}, "unsupported database URL"),
        ("postgresql+psycopg2://u@h/db", {}, "unsupported database URL"),
        ("sqlite://", {}, "needs a file path"),
        ("sqlite:///:memory:", {}, "needs a file path"),
        ("sqlite:///x.db", {"sqlite_synchronous": "OFF"}, "FULL or NORMAL"),
        ("sqlite:///x.db", {"sqlite_synchronous": "EXTRA"}, "FULL or NORMAL"),
    ],
)
def test_bad_urls_and_settings_are_refused(url, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_engine(url, **kwargs)


def test_a_relative_sqlite_path_is_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine = make_engine("sqlite:///relative.db")
    migrate(engine)
    engine.dispose()
    assert (tmp_path / "relative.db").exists()


# SQLite's own setting is NORMAL either way: FULL adds the sync of the WAL after each
# commit, which the connection does itself (see the next test).
@pytest.mark.parametrize("asked, expected", [(None, 1), ("FULL", 1), ("NORMAL", 1), ("normal", 1)])
def test_sqlite_pragmas_are_set_on_every_connection(sqlite_url, asked, expected):
    engine = make_engine(sqlite_url) if asked is None else make_engine(sqlite_url, sqlite_synchronous=asked)
    # two connections at once: both were set up, not just the first
    with db.reading(engine) as one, db.reading(engine) as two:
        for conn in (one, two):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


@pytest.mark.parametrize("asked, syncs", [(None, True), ("FULL", True), ("NORMAL", False)])
def test_sqlite_full_syncs_the_wal_after_each_write_commit_outside_the_writer_lock(
        sqlite_url, monkeypatch, asked, syncs):
    path = sqlite_url.removeprefix("sqlite:///")
    engine = make_engine(sqlite_url) if asked is None else make_engine(sqlite_url, sqlite_synchronous=asked)
    migrate(engine)
    synced = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd):
        # What is synced, whether the commit is already in that file, and whether the
        # next writer could already start.
        other = _other_writer(path)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            lock_free = True
        except sqlite3.OperationalError:
            lock_free = False
        finally:
            other.close()
        synced.append((os.fstat(fd).st_ino, lock_free))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with db.reading(engine) as conn:  # a read commits nothing: nothing to sync
        conn.execute(select(func.count()).select_from(db.high_water)).scalar_one()
    assert synced == []
    with engine.begin() as conn:
        conn.execute(db.high_water.insert().values(store_id="s", key="k", count=1))
        assert synced == []  # not before the commit
    wal = os.stat(path + "-wal").st_ino
    assert synced == ([(wal, True)] if syncs else [])
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            conn.execute(db.high_water.insert().values(store_id="s", key="k2", count=1))
            raise RuntimeError("rolled back")
    assert len(synced) == (1 if syncs else 0)  # a rollback has nothing to make durable
    engine.dispose()


def test_sqlite_through_a_symlink_syncs_and_locks_the_real_files(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "bridge.db"
    link = tmp_path / "bridge.db"
    link.symlink_to(real)
    synced = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.fstat(fd).st_ino), real_fdatasync(fd)))
    engine = make_engine(f"sqlite:///{link}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(db.high_water.insert().values(store_id="s", key="k", count=1))
    assert synced and set(synced) == {os.stat(f"{real}-wal").st_ino}
    assert os.path.exists(f"{real}-writer.lock") and not os.path.exists(f"{link}-writer.lock")
    engine.dispose()


def test_sqlite_connections_dropped_without_close_leave_no_descriptor_open(sqlite_url, monkeypatch):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    # A background checkpoint holds a connection of its own while it runs: none here.
    monkeypatch.setattr(sqlite_db, "CHECKPOINT_SECONDS", float("inf"))

    engine = make_engine(sqlite_url)
    migrate(engine)
    engine.dispose()
    gc.collect()
    before = open_fds()
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # opens the lock file and the WAL descriptor
        conn.execute(db.high_water.insert().values(store_id="s", key="k", count=1))
    assert open_fds() > before
    engine.dispose(close=False)  # what a forked child does with its parent's connections
    del engine, conn
    gc.collect()
    assert open_fds() == before


def _other_writer(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_url):
    engine = make_engine(sqlite_url)
    migrate(engine)
    other = _other_writer(sqlite_url.removeprefix("sqlite:///"))
    with engine.begin() as conn:
        conn.execute(select(1))  # a read only: the lock must already be ours
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    engine.dispose()


def test_sqlite_readers_do_not_hold_the_write_lock(sqlite_url):
    engine = make_engine(sqlite_url)
    migrate(engine)
    other = _other_writer(sqlite_url.removeprefix("sqlite:///"))
    with db.reading(engine) as conn:
        assert conn.execute(select(func.count()).select_from(db.events)).scalar_one() == 0
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO high_water (store_id, key, count) VALUES ('s', 'k', 1)")
        other.execute("COMMIT")
    other.close()
    engine.dispose()


def test_sqlite_concurrent_read_then_write_transactions_never_fail_as_locked(sqlite_url):
    # The upgrade from a read to a write lock is what fails with deferred transactions.
    engines = [make_engine(sqlite_url) for _ in range(4)]
    migrate(engines[0])
    def work(numbered):
        i, engine = numbered
        for n in range(20):
            with engine.begin() as conn:
                conn.execute(select(func.count()).select_from(db.high_water)).scalar_one()
                conn.execute(db.high_water.insert().values(store_id=str(i), key=str(n), count=n))

    _, errors = at_once(work, list(enumerate(engines)), timeout=30)
    assert errors == []
    with engines[0].connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.high_water)).scalar_one() == 80
    for e in engines:
        e.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(engine):
    migrate(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert engine.pool.checkedin() == 1
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            gc.collect()  # the parent's connections, now dropped, must not be closed under it
            if engine.pool.checkedin() == 0:
                with engine.connect() as conn:
                    code = 0 if conn.execute(text("SELECT 1")).scalar() == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # the parent's pooled connection survived the child
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert engine.pool.checkedin() == 1


def test_sqlite_writers_queue_on_the_writer_lock_and_a_thread_cannot_wait_for_itself(sqlite_url):
    engine = db.make_engine(sqlite_url)
    db.migrate(engine)
    order: list[str] = []
    entered = threading.Event()

    def second_writer():
        entered.wait(5)
        with engine.begin() as conn:  # blocks in flock until the first commits
            order.append("second")
            conn.execute(text("select 1"))

    thread = threading.Thread(target=second_writer)
    thread.start()
    with engine.begin() as conn:
        entered.set()
        thread.join(0.3)
        assert thread.is_alive(), "the second writer must wait for the first"
        order.append("first")
        with pytest.raises(sqlite3.OperationalError, match="already inside a write transaction"):
            with engine.begin():
                pass
    thread.join(5)
    assert order == ["first", "second"]
    with engine.begin() as conn:  # the lock was released: a later write goes through
        conn.execute(text("select 1"))


#: Two greenlets of one gevent-patched process writing to one SQLite file: the first
#: yields while it holds the writer lock. Prints the order of what happened as JSON.
_GREENLET_WRITERS = """
import json, sys
if sys.argv[2] == "imported-first":  # as a process that imported the app before the patch
    from kwai_bridge import db
from gevent import monkey
monkey.patch_all()
import gevent
from gevent.event import Event
from sqlalchemy import text
from kwai_bridge import db

engine = db.make_engine(sys.argv[1])
db.migrate(engine)
order, held = [], Event()

def first():
    with engine.begin() as conn:
        conn.execute(text("select 1"))
        order.append("first writes")
        held.set()
        gevent.sleep(0.1)  # yields while holding the writer lock
        try:
            with engine.begin():
                pass
        except Exception as exc:
            order.append(f"first refused a second write: {exc.__class__.__name__}")
        order.append("first commits")

def second():
    held.wait()
    order.append("second waits")
    with engine.begin() as conn:
        conn.execute(text("select 1"))
        order.append("second writes")

gevent.joinall([gevent.spawn(first), gevent.spawn(second)], raise_error=True)
print(json.dumps(order))
"""


@pytest.mark.parametrize("imports", ["patched-first", "imported-first"])
def test_sqlite_writer_lock_queues_greenlets_of_one_process(sqlite_url, imports):
    """Under gevent, greenlets share a thread: one waiting in `flock` for another of its
    process would block that process for good; it must wait for its turn instead."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _GREENLET_WRITERS, sqlite_url, imports], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["first writes", "second waits",
                                       "first refused a second write: OperationalError",
                                       "first commits", "second writes"]


# -- checkpoints ---------------------------------------------------------------------
#: Writes to the SQLite file argv[1] with CHECKPOINT_SECONDS argv[2], under gevent
#: when argv[3] says so (checkpoints then run in the hub's thread pool), in transactions
#: one by one or steadily (argv[4]), and prints the size of the WAL file.
_BALLAST_WRITER = """
import os, sys, time
if sys.argv[3] == "gevent":
    from gevent import monkey
    monkey.patch_all()
from kwai_bridge import db
from kwai_bridge.db import sqlite as sqlite_db

sqlite_db.CHECKPOINT_SECONDS = float(sys.argv[2])
url = sys.argv[1]
engine = db.make_engine(url)
db.migrate(engine)
path = os.path.realpath(url.removeprefix("sqlite:///"))
with engine.begin() as conn:
    conn.exec_driver_sql("CREATE TABLE ballast (b BLOB)")
writer = sqlite_db._writers[path + "-writer.lock"]

def wait_for_the_checkpoint():
    deadline = time.monotonic() + 30
    while writer.checkpointing and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not writer.checkpointing, "the background checkpoint never ended"

if sys.argv[4] == "one-by-one":  # 12 x 512 KB, each write after the last one's checkpoint
    for _ in range(12):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO ballast VALUES (randomblob(524288))")
        wait_for_the_checkpoint()
else:  # steady: 800 x 32 KB (25 MB), one after the other, the checkpoints running meanwhile
    for _ in range(800):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO ballast VALUES (randomblob(32768))")
    wait_for_the_checkpoint()
with engine.connect() as conn:
    assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
print(os.path.getsize(path + "-wal"))
"""


@pytest.mark.parametrize("mode", ["threads", "gevent"])
@pytest.mark.parametrize("seconds, writes, most, least", [
    # A checkpoint after each write: the next write starts the WAL over, and it holds
    # about one transaction.
    (0, "one-by-one", 2 * 524288 + 256 * 1024, 0),
    # None due: the commits ran none of their own (SQLite's would have started over at
    # 1,000 pages, 4 MB), and the WAL holds all twelve.
    (1e9, "one-by-one", None, 12 * 524288),
    # Writes that never pause: each checkpoint's last pass, under the writer lock, still
    # ends with the whole WAL copied, and a later write starts it over. (Without that
    # pass, the WAL held everything, 34 MB; here 0.3 MB, 1.8 MB with the cores busy.)
    (0, "steady", 16 * 524288, 0)], ids=["checkpoint-each-time", "none-due", "steady-writes"])
def test_sqlite_checkpoints_run_in_the_background_and_never_in_a_commit(sqlite_url, mode, seconds, writes, most,
                                                                        least):
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _BALLAST_WRITER, sqlite_url, str(seconds), mode, writes], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    wal = int(done.stdout.strip().splitlines()[-1])
    assert wal >= least
    if most is not None:
        assert wal <= most, f"the WAL grew to {wal:,} bytes"
