"""Group commit (SQLite): webhooks of one process that wait for another's write
transaction are committed together, each with its own result, and one that fails fails
alone. On PostgreSQL each is committed at once, held up by no other."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from kwai_bridge.db import deliveries, make_engine, migrate
from kwai_bridge.outbox import Outbox
from kwai_bridge.outbox.commits import GroupCommit
from tests.outbox_helpers import T0, accept, box, conv, engine  # noqa: F401 (fixtures)
from tests.threads import at_once

WAIT = 10  # seconds a step may take on a busy machine before the test gives up


@pytest.fixture
def notes(engine):  # noqa: F811
    with engine.begin() as conn:
        conn.execute(text("create table notes (n integer primary key)"))
    return engine


def insert(n: int, seen: list):
    def work(cursor):
        seen.append((n, cursor))
        if n < 0:
            raise ValueError(f"piece {n} cannot be stored")
        cursor.execute(f"insert into notes (n) values ({n})")
        return n * 10
    return work


def queue_behind(commits: GroupCommit, first, rest: list[tuple], inside: threading.Event,
                 release: threading.Event) -> dict:
    """Run `commits.run(first)` in a thread until it sets `inside`, then
    `commits.run(work)` for each `(key, work)` of `rest` in threads; once all of those are
    queued, set `release`. Each key's result or error (the first's under 0)."""
    outcomes: dict = {}

    def call(key, work):
        try:
            outcomes[key] = commits.run(work)
        except Exception as exc:
            outcomes[key] = exc

    threads = [threading.Thread(target=call, args=(0, first))]
    threads[0].start()
    assert inside.wait(WAIT)
    threads += [threading.Thread(target=call, args=item) for item in rest]
    for thread in threads[1:]:
        thread.start()
    for _ in range(WAIT * 100):
        if commits.queued == len(rest):
            break
        threading.Event().wait(0.01)
    assert commits.queued == len(rest)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    return outcomes


def queued_behind_a_transaction(commits: GroupCommit, numbers: list[int], seen: list) -> dict:
    """Run `insert(n)` for each of `numbers` in threads while a first piece holds its
    transaction open; once all are queued, let it end. Each number's result or error."""
    inside, release = threading.Event(), threading.Event()

    def first(cursor):
        seen.append((0, cursor))
        inside.set()
        assert release.wait(WAIT)
        cursor.execute("insert into notes (n) values (0)")
        return 0

    return queue_behind(commits, first, [(n, insert(n, seen)) for n in numbers], inside, release)


def stored(engine) -> list[int]:  # noqa: F811
    with engine.connect() as conn:
        return sorted(conn.execute(text("select n from notes")).scalars())


def test_pieces_queued_behind_a_transaction_commit_in_one(notes):
    commits, seen = GroupCommit(notes), []
    outcomes = queued_behind_a_transaction(commits, [1, 2, 3, 4, 5], seen)
    assert outcomes == {0: 0, 1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    cursors = {n: cursor for n, cursor in seen}
    assert len({id(cursors[n]) for n in (1, 2, 3, 4, 5)}) == 1  # one transaction for the five
    assert cursors[1] is not cursors[0]
    assert stored(notes) == [0, 1, 2, 3, 4, 5]


def test_a_piece_that_fails_fails_alone(notes):
    commits, seen = GroupCommit(notes), []
    outcomes = queued_behind_a_transaction(commits, [1, -1, 2], seen)
    assert isinstance(outcomes.pop(-1), ValueError)
    assert outcomes == {0: 0, 1: 10, 2: 20}
    assert stored(notes) == [0, 1, 2]


def test_a_batch_is_bounded(notes):
    commits, seen = GroupCommit(notes, max_batch=2), []
    queued_behind_a_transaction(commits, [1, 2, 3, 4, 5], seen)
    per_cursor: dict[int, int] = {}
    for n, cursor in seen:
        per_cursor[id(cursor)] = per_cursor.get(id(cursor), 0) + 1
    assert max(per_cursor.values()) <= 2
    assert stored(notes) == [0, 1, 2, 3, 4, 5]


def test_concurrent_webhooks_each_get_their_own_answer(box):  # noqa: F811
    """Sixteen threads accept eight deliveries twice each: every delivery is stored once,
    with its event, and the other copy is answered as a duplicate."""
    def deliver(n: int):
        return n, accept(box, f"d-{n}", [conv(f"order:{n}:EVENT_PURCHASE")], body=b'{"id": %d}' % n)

    results, errors = at_once(deliver, [n % 8 for n in range(16)], timeout=WAIT * 3)
    assert errors == [] and len(results) == 16
    for n in range(8):
        answers = sorted((r.duplicate, r.created) for m, r in results if m == n)
        assert answers == [(False, 1), (True, 0)]
    assert len(box.list_events(limit=100)) == 8


# -- PostgreSQL: each webhook at once ---------------------------------------------------
@pytest.mark.postgres
def test_on_postgresql_a_webhook_is_not_held_up_by_another_in_flight(postgres_url):
    """PostgreSQL commits transactions side by side: a webhook whose statement waits (here
    for a lock another session holds on its delivery key) does not hold up the next one
    of its process, as a queue behind it did."""
    engine = make_engine(postgres_url)
    migrate(engine)
    box = Outbox(engine)
    outcomes: dict = {}

    def deliver(key: str) -> None:
        outcomes[key] = accept(box, key, [conv(f"order:{key}:EVENT_PURCHASE")], body=key.encode())

    try:
        with engine.connect() as holder:
            holder.execute(deliveries.insert().values(
                store_id="store-a", platform="shopify", topic="orders/paid", delivery_key="first", received_at=T0,
                outcome="queued"))  # not committed: the first webhook's insert waits for it
            first = threading.Thread(target=deliver, args=("first",))
            first.start()
            assert waiting_for_a_lock(engine), "the first webhook never waited for the holder's lock"
            second = threading.Thread(target=deliver, args=("second",))
            second.start()
            second.join(WAIT)
            assert not second.is_alive() and first.is_alive()
            assert outcomes["second"].created == 1
            holder.rollback()
        first.join(WAIT)
        assert not first.is_alive() and not outcomes["first"].duplicate
        assert sorted(row.business_key for row in box.list_events()) == ["order:first:EVENT_PURCHASE",
                                                                           "order:second:EVENT_PURCHASE"]
    finally:
        engine.dispose()


def waiting_for_a_lock(engine) -> bool:  # noqa: F811
    """Whether, within WAIT seconds, a session of the database waits for a lock."""
    for _ in range(WAIT * 100):
        with engine.connect() as observer:  # a transaction of its own: the activity as it is now
            waiting = observer.execute(text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock'")).scalar()
        if waiting:
            return True
        threading.Event().wait(0.01)
    return False


#: A gevent-patched process whose writer waits for another process's SQLite writer lock;
#: the holder lets go when told (or after 3 s). Prints the order of what happened.
_WAITING_WRITER = """
from gevent import monkey
monkey.patch_all()
import json, os, subprocess, sys
import gevent
from sqlalchemy import text
from kwai_bridge import db

url = sys.argv[1]
engine = db.make_engine(url)
db.migrate(engine)
lock = os.path.realpath(url.removeprefix("sqlite:///")) + "-writer.lock"
holder = subprocess.Popen(
    [sys.executable, "-c", "import fcntl, select, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
     "print('held', flush=True); select.select([sys.stdin], [], [], 3)", lock],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "held"
order = []

def writer():
    with engine.begin() as conn:  # waits for the lock the holder has
        order.append("writing")
        conn.execute(text("select 1"))

def other():
    order.append("another greenlet ran")
    holder.stdin.write("go")
    holder.stdin.close()

gevent.joinall([gevent.spawn(writer), gevent.spawn(other)], raise_error=True)
holder.wait()
print(json.dumps(order))
"""


def test_a_greenlet_waiting_for_the_writer_lock_lets_its_process_run(sqlite_url):
    """While another process writes, the greenlet that waits for the lock must not stop
    the others of its process: they go on, and reach the group commit meanwhile."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _WAITING_WRITER, sqlite_url], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["another greenlet ran", "writing"]
