"""The SQLite engine: WAL, durable commits, and write transactions that queue on a lock.

SQLite runs in WAL mode with FULL durability by default (every commit is on disk before
it returns) and opens every write transaction with `BEGIN IMMEDIATE`, so several
processes (web workers and a dispatcher) queue on the write lock instead of failing
with "database is locked" when a read transaction tries to upgrade.

Checkpoints (copying the WAL back into the database file, and syncing it) run in the
background, never inside a commit: see `WriterLockedConnection.checkpoint_soon`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import sys
import threading
import time
import weakref
from typing import Any
from urllib.request import pathname2url

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine

log = logging.getLogger(__name__)

SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
BUSY_TIMEOUT_MS = 5000
#: The least time between two checkpoints of a database file by one process. SQLite's
#: own would run one every 1,000 pages (4 MB) written; this bounds the WAL by what the
#: processes write in about this long (measured at 900 webhooks/s: 9-13 MB; 40 MB with
#: one a second, and a slower p99).
CHECKPOINT_SECONDS = 0.2
#: Execution option asking for a plain (deferred) BEGIN: see `kwai_bridge.db.reading()`.
DEFERRED = "kwai_bridge_deferred"


def sqlite_engine(parsed: URL, synchronous: str) -> Engine:
    """An engine for the SQLite file `parsed` names, set up as the module says."""
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
    engine = create_engine(parsed, connect_args={"factory": WriterLockedConnection}, hide_parameters=True)

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
            dbapi_connection.database_path = real_path
            # No checkpoint inside COMMIT: `checkpoint_soon` runs them off the writer lock.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get(DEFERRED, False):
            conn.exec_driver_sql("BEGIN")
            return
        conn.connection.dbapi_connection.begin_write()

    return engine


class _ProcessWriter:
    """The writers of one database file inside this process: one at a time, known by
    thread (or, under gevent, greenlet) id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: int | None = None
        # This process's background checkpoints of the file: one at a time, and at most
        # one every CHECKPOINT_SECONDS (none in a process's first writes).
        self.checkpointing = False
        self.checkpointed_at = time.monotonic()


#: Lock file path -> its _ProcessWriter. Made on first use: under gevent that is after
#: the patch, so the lock is gevent's; a forked child starts with none.
_writers: dict[str, _ProcessWriter] = {}
os.register_at_fork(after_in_child=_writers.clear)


class WriterLockedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions queue on an advisory file lock.

    SQLite's own busy handler retries a locked database after sleeping 1, 2, 5, 10 ms
    and longer; with several gunicorn workers and the dispatcher writing, those sleeps,
    not the work, set the pace. A process blocked in `flock` wakes as soon as the holder
    lets go (measured: 0.74 of the minimal durable receiver's rate against 0.45 without
    it). The lock is taken before BEGIN IMMEDIATE and released after COMMIT or ROLLBACK;
    the kernel releases it when a holder dies. Holders are short write transactions, so
    the wait is not bounded by a timeout.

    Inside one process, writers first queue on a lock of the process, so that only one
    of its threads or greenlets at a time waits in (or holds) `flock`: a file lock is
    the process's, and a second writer of the same process must wait for the first
    here, not inside `flock`. Under gevent the wait in `flock` (and the WAL sync after
    COMMIT) runs in a thread of the hub's pool (`off_the_loop`), so the process's other
    greenlets go on reading and converting webhooks meanwhile. A thread or greenlet that
    already holds the lock through another connection is refused at once instead of
    waiting for itself.
    """

    lock_path: str = ""
    database_path: str = ""
    _lock_fd: int | None = None  # the lock file, kept open with the connection
    _locked = False
    _writer: _ProcessWriter | None = None
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
        writer = _writers.get(self.lock_path) or _writers.setdefault(self.lock_path, _ProcessWriter())
        me = threading.get_ident()
        if writer.owner == me:
            raise sqlite3.OperationalError(
                "database is locked: this thread is already inside a write transaction")
        writer.lock.acquire()
        try:
            if self._lock_fd is None:
                self._lock_fd = self._keep_open(self.lock_path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another process writes: wait without stopping this one
                off_the_loop(fcntl.flock, self._lock_fd, fcntl.LOCK_EX)
        except BaseException:
            writer.lock.release()
            raise
        writer.owner = me
        self._writer = writer
        self._locked = True

    def release_writer_lock(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            writer, self._writer = self._writer, None
            writer.owner = None
            writer.lock.release()

    def sync_after_commit(self, wal_path: str) -> None:
        """Make every write commit durable: sync the WAL file once the commit is written."""
        self._wal_path = wal_path

    def commit(self) -> None:
        wrote, writer = self._locked, self._writer
        try:
            super().commit()
        finally:
            self.release_writer_lock()
        if wrote:
            self._sync_wal()
            self.checkpoint_soon(writer)

    def _sync_wal(self) -> None:
        if self._wal_path is not None:
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
            off_the_loop(os.fdatasync, self._wal_fd)

    def checkpoint_soon(self, writer: _ProcessWriter) -> None:
        """After a write commit: start a checkpoint in the background, unless this process
        has one under way or ran one less than CHECKPOINT_SECONDS ago.

        SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 pages of
        WAL: that request, every other writer queued on the lock, and under gevent the
        whole process waited while it copied some 4 MB and synced the database file. A
        PASSIVE checkpoint takes neither the writer lock nor any reader's: it copies what
        it can while writers go on, and the next writer after a complete one starts the
        WAL from its beginning again. Its syncs keep the order SQLite's own keeps (the WAL
        before the copy, the database after), so nothing committed depends on it.

        Measured with wrk at 900 webhooks/s, two workers, nine alternating runs each:
        p99 6.9-16.4 ms (median 8.9) and the slowest answer 11-33 ms (median 15) with
        SQLite's checkpoints; 5.5-12.9 ms (median 7.0) and 10-30 ms (median 12) with
        these."""
        # No lock: two threads that race here start two checkpoints, and the second finds
        # nothing to do (or the first under way, and gives up).
        if writer.checkpointing or time.monotonic() - writer.checkpointed_at < CHECKPOINT_SECONDS:
            return
        writer.checkpointing = True
        in_the_background(_checkpoint, self.database_path, self.lock_path, writer)

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


#: Frames that may come into the WAL during an unlocked pass for the next pass to be the
#: last, taken under the writer lock (256 frames: about 1 MB, a few milliseconds to copy).
CHECKPOINT_LAST_PASS_FRAMES = 256
#: Unlocked passes at most before the last, however fast the WAL grows.
CHECKPOINT_UNLOCKED_PASSES = 3


def _checkpoint(database_path: str, lock_path: str, writer: _ProcessWriter) -> None:
    """A checkpoint of the WAL of `database_path`, on a connection of its own, that leaves
    the WAL whole in the database file, so that the next writer starts it over.

    PASSIVE passes copy what was committed when each began; under steady writes new
    frames keep arriving, no pass ends with all of them, and the WAL would grow without
    end (measured: 686 MB after 10 s of wrk at 2,300 webhooks/s). So the unlocked passes
    copy the bulk, and the last, holding the writer lock as another process would (its
    own descriptor of the lock file), copies the few frames written meanwhile."""
    try:
        # mode=rw: a file deleted meanwhile is not made again, empty
        conn = sqlite3.connect(f"file:{pathname2url(database_path)}?mode=rw", uri=True, isolation_level=None,
                               check_same_thread=False)
        try:
            frames = 0
            for _ in range(CHECKPOINT_UNLOCKED_PASSES):
                busy, logged, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy:  # another process's checkpoint under way: it does the work
                    return
                came, frames = logged - frames, logged
                if came <= CHECKPOINT_LAST_PASS_FRAMES:
                    break
            lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                os.close(lock)  # lets go of the lock
        finally:
            conn.close()
    except (sqlite3.Error, OSError) as exc:  # the file or its folder is gone, or the disk failed: the next one
        log.warning("checkpoint of %s skipped: %s", database_path, exc)
    finally:
        writer.checkpointed_at = time.monotonic()
        writer.checkpointing = False


def _gevent_threadpool():
    """The hub's pool of real threads when gevent has patched this process, else None."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from gevent import get_hub

        return get_hub().threadpool
    return None


def in_the_background(function, *args) -> None:
    """`function(*args)` in another thread, not waited for: under gevent a thread of the
    hub's pool (a real one, so the loop goes on), otherwise a daemon thread."""
    pool = _gevent_threadpool()
    if pool is not None:
        pool.spawn(function, *args)
        return
    threading.Thread(target=function, args=args, name="sqlite-checkpoint", daemon=True).start()


def off_the_loop(function, *args):
    """`function(*args)`, a call that waits in the kernel (a lock, a disk sync). Under
    gevent it runs in a thread of the hub's pool, so that the process's other greenlets
    go on meanwhile (parsing the next webhooks, which then commit together: see
    kwai_bridge.outbox.commits); otherwise it is called as it is (it releases the GIL)."""
    pool = _gevent_threadpool()
    return function(*args) if pool is None else pool.apply(function, args)


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
