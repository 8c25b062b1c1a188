"""Heartbeats: the dispatcher beats from its loop (at most once a second), removes its
row when it stops cleanly, and `/readyz` reports a dispatcher whose beat is stale.
Real databases; time is injected."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from kwai_bridge.db import make_engine, migrate
from kwai_bridge.heartbeat import DISPATCHER, RETENTION, Beat, Heartbeats, Pacemaker, liveness
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.outbox import Outbox
from kwai_bridge.worker import Dispatcher
from server import create_app
from tests.clock import Clock
from tests.serving import registry_for, reimport, store_entry, write_stores

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def beats(database_url) -> Heartbeats:
    engine = make_engine(database_url)
    migrate(engine)
    return Heartbeats(engine)


def count_writes(engine) -> list[str]:
    """The INSERT/DELETE statements run on `engine` from now on."""
    seen: list[str] = []

    def before(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "DELETE")):
            seen.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", before)
    return seen


def test_beat_renews_one_row_per_owner_and_remove_forgets_it(beats):
    beats.beat(DISPATCHER, "host:1", started_at=T0, now=T0)
    beats.beat(DISPATCHER, "host:1", started_at=T0, now=T0 + timedelta(seconds=5))
    beats.beat(DISPATCHER, "host:2", started_at=T0, now=T0 + timedelta(seconds=3))
    beats.beat("other", "host:1", started_at=T0, now=T0)
    assert beats.beats(DISPATCHER) == [
        Beat(DISPATCHER, "host:1", T0, T0 + timedelta(seconds=5)),
        Beat(DISPATCHER, "host:2", T0, T0 + timedelta(seconds=3)),
    ]
    beats.remove(DISPATCHER, "host:1")
    assert [b.owner for b in beats.beats(DISPATCHER)] == ["host:2"]
    assert [b.owner for b in beats.beats("other")] == ["host:1"]


def test_pacemaker_writes_at_most_once_a_second(beats):
    writes = count_writes(beats.engine)
    pacemaker = Pacemaker(beats, role=DISPATCHER, owner="host:7")
    pacemaker.start(T0)  # prunes, then beats
    assert writes == ["DELETE", "INSERT"]
    for tenth in range(1, 10):  # passes of the loop within the same second
        pacemaker.tick(T0 + timedelta(seconds=tenth / 10))
    assert writes == ["DELETE", "INSERT"]
    pacemaker.tick(T0 + timedelta(seconds=1))
    assert writes == ["DELETE", "INSERT", "INSERT"]
    assert beats.beats(DISPATCHER) == [Beat(DISPATCHER, "host:7", T0, T0 + timedelta(seconds=1))]
    pacemaker.tick(T0)  # the clock went back: beat rather than wait for it to catch up
    assert writes[-1] == "INSERT" and len(writes) == 4
    pacemaker.stop()
    assert beats.beats(DISPATCHER) == []


def test_pacemaker_start_drops_rows_gone_for_a_day(beats):
    beats.beat(DISPATCHER, "dead:1", started_at=T0, now=T0 - RETENTION - timedelta(seconds=1))
    beats.beat(DISPATCHER, "dead:2", started_at=T0, now=T0 - RETENTION + timedelta(seconds=1))
    Pacemaker(beats, role=DISPATCHER, owner="host:7").start(T0)
    assert [b.owner for b in beats.beats(DISPATCHER)] == ["host:7", "dead:2"]


def test_pacemaker_goes_on_when_the_database_fails(tmp_path, caplog):
    broken = Heartbeats(make_engine(f"sqlite:///{tmp_path / 'no-schema.db'}"))  # no heartbeats table
    pacemaker = Pacemaker(broken, role=DISPATCHER, owner="host:7")
    with caplog.at_level("WARNING", logger="kwai_bridge.heartbeat"):
        pacemaker.start(T0)
        pacemaker.tick(T0 + timedelta(seconds=2))
        pacemaker.stop()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["dispatcher host:7: heartbeat not recorded (OperationalError); trying again"]


# (seconds since each row's beat, stale_after) -> live owners, problem?
LIVENESS = [
    ((), 60, [], False),                 # no dispatcher ever ran, or all stopped cleanly
    ((5,), 60, ["d0"], False),
    ((60,), 60, ["d0"], False),          # exactly at the threshold still counts
    ((61,), 60, [], True),
    ((3600, 2), 60, ["d1"], False),      # a dead one beside a live one: ready
    ((3600, 61), 60, [], True),
    ((-5,), 60, ["d0"], False),          # a beat from a clock a little ahead
]


@pytest.mark.parametrize("ages, stale_after, live, problem", LIVENESS)
def test_liveness(beats, ages, stale_after, live, problem):
    for n, age in enumerate(ages):
        beats.beat(DISPATCHER, f"d{n}", started_at=T0 - timedelta(days=1), now=T0 - timedelta(seconds=age))
    seen = liveness(beats, now=T0, stale_after=stale_after)
    assert [b.owner for b in seen.live] == live
    assert len(seen.live) + len(seen.stale) == len(ages)
    assert (seen.problem is not None) == problem


def test_problem_sentence_names_the_latest_beat_and_the_remedy(beats):
    beats.beat(DISPATCHER, "web-1:4242", started_at=T0, now=T0 - timedelta(seconds=300))
    beats.beat(DISPATCHER, "web-2:17", started_at=T0, now=T0 - timedelta(seconds=90))
    assert liveness(beats, now=T0, stale_after=60).problem == (
        "no dispatcher has sent a heartbeat in the last 60 s (the latest, from web-2:17, is 90 s old): "
        "events wait in the outbox until one runs (`kwai-bridge worker` or `kwai-bridge serve --with-worker`)")


# -- the dispatcher's loop ------------------------------------------------------------
@pytest.fixture
def dispatcher_for(database_url, tmp_path, kwai):
    def build(clock) -> Dispatcher:
        stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
        engine = make_engine(database_url)
        migrate(engine)
        return Dispatcher(outbox=Outbox(engine), registry=registry_for(engine, stores),
                          client=KwaiClient(kwai.base_url), concurrency=2, clock=clock,
                          owner="host:99", heartbeats=Heartbeats(engine))
    return build


def test_running_dispatcher_beats_and_removes_its_row_when_stopped(dispatcher_for):
    clock = Clock()
    dispatcher = dispatcher_for(clock)
    stop = threading.Event()
    runner = threading.Thread(target=dispatcher.run, kwargs={"stop": stop, "poll_interval": 0.01})
    runner.start()
    try:
        beats = dispatcher.heartbeats
        wait_until(lambda: beats.beats(DISPATCHER), what="the first beat")
        assert beats.beats(DISPATCHER) == [Beat(DISPATCHER, "host:99", T0, T0)]
        clock.advance(1)
        wait_until(lambda: beats.beats(DISPATCHER)[0].beat_at == T0 + timedelta(seconds=1), what="the next beat")
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert beats.beats(DISPATCHER) == []


def test_dispatcher_once_leaves_no_heartbeat(dispatcher_for):
    dispatcher = dispatcher_for(Clock())
    assert dispatcher.run(once=True) == {}
    assert dispatcher.heartbeats.beats(DISPATCHER) == []


def wait_until(predicate, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- readiness -------------------------------------------------------------------------
@pytest.fixture
def ready_app(database_url, tmp_path):
    def build(clock, **settings):
        stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
        migrate(make_engine(database_url))
        app = create_app({"DATABASE_URL": database_url, "STORES": str(stores), **settings}, clock=clock)
        return app.test_client(), Heartbeats(app.extensions["kwai_bridge.runtime"].engine)
    return build


def test_readyz_is_not_ready_when_the_dispatcher_stopped_beating(ready_app):
    clock = Clock()
    client, beats = ready_app(clock)
    assert client.get("/readyz").json == {"status": "ready", "stores": 1, "dispatchers": 0}
    beats.beat(DISPATCHER, "host:5", started_at=T0, now=T0)
    assert client.get("/readyz").json == {"status": "ready", "stores": 1, "dispatchers": 1}
    clock.advance(61)  # killed with SIGKILL: its row stays and grows stale
    answer = client.get("/readyz")
    assert answer.status_code == 503
    (problem,) = answer.json["problems"]
    assert problem.startswith("no dispatcher has sent a heartbeat in the last 60 s (the latest, from host:5")
    beats.beat(DISPATCHER, "host:6", started_at=clock.now, now=clock.now)  # restarted: ready again
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("settings, status", [
    ({}, 503),
    ({"DISPATCHER_STALE_SECONDS": "600"}, 200),
    ({"DISPATCHER_STALE_SECONDS": "0"}, 200),  # not checked
])
def test_readyz_threshold_is_a_setting(ready_app, settings, status):
    client, beats = ready_app(Clock(), **settings)
    beats.beat(DISPATCHER, "host:5", started_at=T0, now=T0 - timedelta(seconds=300))
    assert client.get("/readyz").status_code == status
