"""Supervision: the back-off as a table, the supervisor over real child processes (its
clock and sleep injected), and `kwai-bridge serve --with-worker` whose dispatcher is
killed with SIGKILL and comes back, with a working directory that tries to shadow the
project's packages."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from kwai_bridge.supervisor import MAX_DELAY, STABLE_SECONDS, Supervisor, describe_exit, restart_delay
from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS, Served, bridge_env, store_entry, write_stores
from tests.signing import headers_for

BACKOFF = [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 60), (8, 60), (1000, 60)]


@pytest.mark.parametrize("deaths, delay", BACKOFF)
def test_restart_backoff_doubles_up_to_a_minute(deaths, delay):
    assert restart_delay(deaths) == delay
    assert MAX_DELAY == 60


def test_restart_backoff_counts_from_one():
    with pytest.raises(ValueError):
        restart_delay(0)


@pytest.mark.parametrize("returncode, words", [
    (0, "exit status 0"),
    (3, "exit status 3"),
    (-signal.SIGKILL, "killed by SIGKILL"),
    (-signal.SIGSEGV, "killed by SIGSEGV"),
    (None, "ended (its exit status was collected elsewhere)"),
])
def test_describe_exit(returncode, words):
    assert describe_exit(returncode) == words


class SteppingClock:
    """A monotonic clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class RecordingSleep:
    """Records each back-off instead of waiting; after `deaths` of them, stops."""

    def __init__(self, deaths: int, clock: SteppingClock | None = None, then_step: float | None = None) -> None:
        self.delays: list[float] = []
        self.deaths = deaths
        self.done = threading.Event()
        self.clock, self.then_step = clock, then_step

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        if self.clock is not None and self.then_step is not None and len(self.delays) == 3:
            self.clock.step = self.then_step  # the next child runs long: a healthy run
        if len(self.delays) >= self.deaths:
            self.done.set()
            return True  # as if stopping: no more restarts
        return False


def exiting(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(caplog):
    sleep = RecordingSleep(5)
    supervisor = Supervisor(exiting(3), name="dispatcher", clock=SteppingClock(1), sleep=sleep)
    with caplog.at_level("ERROR", logger="kwai_bridge.supervisor"):
        supervisor.start()
        assert sleep.done.wait(60)
        supervisor.stop()
    assert sleep.delays == [1, 2, 4, 8, 16]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 5
    assert all("exit status 3" in m for m in errors), errors
    assert errors[0].startswith("dispatcher (pid ") and "starting it again in 1 s" in errors[0]


def test_a_child_that_ran_long_is_restarted_quickly_again():
    clock = SteppingClock(1)
    sleep = RecordingSleep(5, clock=clock, then_step=STABLE_SECONDS)
    supervisor = Supervisor(exiting(1), name="dispatcher", clock=clock, sleep=sleep)
    supervisor.start()
    assert sleep.done.wait(60)
    supervisor.stop()
    assert sleep.delays == [1, 2, 4, 1, 1]


def test_stop_ends_the_child_and_does_not_restart_it(caplog):
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor = Supervisor(sleeper, name="dispatcher").start()
    pid = supervisor.pid
    assert pid is not None
    with caplog.at_level("ERROR", logger="kwai_bridge.supervisor"):
        supervisor.stop(timeout=30)
    assert supervisor.pid is None
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_child_is_reported_with_its_signal_and_restarted(caplog):
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    sleep = RecordingSleep(1)
    supervisor = Supervisor(sleeper, name="dispatcher", sleep=sleep).start()
    try:
        with caplog.at_level("ERROR", logger="kwai_bridge.supervisor"):
            os.kill(supervisor.pid, signal.SIGKILL)
            assert sleep.done.wait(60)
    finally:
        supervisor.stop()
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "killed by SIGKILL" in error.getMessage()


def test_a_clean_exit_is_restarted_but_logged_as_a_warning(caplog):
    sleep = RecordingSleep(1)
    supervisor = Supervisor(exiting(0), name="dispatcher", sleep=sleep)
    with caplog.at_level("WARNING", logger="kwai_bridge.supervisor"):
        supervisor.start()
        assert sleep.done.wait(60)
        supervisor.stop()
    assert [(r.levelname, "exit status 0" in r.getMessage()) for r in caplog.records] == [("WARNING", True)]


# -- the real thing ---------------------------------------------------------------------
def paid_order(order_id: int, click_id: str) -> bytes:
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order.update(id=order_id, test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": click_id}])
    return json.dumps(order).encode()


def post_order(served: Served, order_id: int, click_id: str) -> None:
    body = paid_order(order_id, click_id)
    headers = headers_for("shopify", "orders/paid", shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body)
    answer = requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "received", answer.text


def wait_for(predicate, *, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def delivered(kwai, click_id: str) -> bool:
    return any(r.fields.get("clickid") == click_id for r in kwai.successes())


@pytest.mark.slow
def test_serve_restarts_its_dispatcher_after_sigkill(tmp_path, database_url, kwai):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=database_url, stores=stores, kwai_url=kwai.base_url)
    if database_url.startswith("postgresql"):
        from kwai_bridge.db import make_engine, migrate

        migrate(make_engine(database_url))
    served = Served(env, workers=1, extra_args=["--with-worker"]).start()
    try:
        first = wait_for(served.dispatcher_pid, what="the dispatcher to start")
        post_order(served, 1001, "click-before")
        wait_for(lambda: delivered(kwai, "click-before"), what="the first event to be delivered")

        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := served.dispatcher_pid()) not in (None, first) and pid,
                          what="a new dispatcher")
        post_order(served, 1002, "click-after")
        wait_for(lambda: delivered(kwai, "click-after"), what="the event sent after the kill to be delivered")
        # The dead dispatcher's row is stale, the new one beats: ready.
        ready = requests.get(f"{served.url}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["dispatchers"] >= 1, ready.text
    finally:
        served.__exit__(None, None, None)
    output = served.output()
    assert f"ERROR kwai_bridge.supervisor: dispatcher (pid {first}) killed by SIGKILL" in output, output
    # serve stopped with SIGTERM to its process group: the dispatcher had it too, which
    # is no error (and, as serve was stopping, not even worth a warning, most often).
    assert output.count("ERROR kwai_bridge.supervisor") == 1, output
    assert second != first
    assert [r.fields["clickid"] for r in kwai.successes()] == ["click-before", "click-after"]


@pytest.mark.slow
def test_the_working_directory_does_not_shadow_the_dispatchers_modules(tmp_path, sqlite_url, kwai):
    # A folder named like one of ours in the working directory: imported instead of the
    # project if the child put the working directory first on sys.path (python -m does).
    workdir = tmp_path / "work"
    for package in ("kwai_bridge", "adapters"):
        (workdir / package).mkdir(parents=True)
        (workdir / package / "__init__.py").write_text(f"raise SystemExit('shadowed: {package}')\n")
    (workdir / "kwai_bridge" / "cli.py").write_text("raise SystemExit('shadowed: kwai_bridge.cli')\n")
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=sqlite_url, stores=stores, kwai_url=kwai.base_url)
    # The console script, as an operator runs it: its own sys.path[0] is its bin folder.
    program = [str(Path(sys.executable).with_name("kwai-bridge"))]
    served = Served(env, workers=1, extra_args=["--with-worker"], cwd=workdir, program=program).start()
    try:
        post_order(served, 2001, "click-shadow")
        wait_for(lambda: delivered(kwai, "click-shadow"), what="the event to be delivered")
    finally:
        served.__exit__(None, None, None)
    assert "shadowed" not in served.output()


def test_once_winding_down_a_child_that_ends_is_neither_reported_nor_restarted(caplog):
    # As when serve and its dispatcher both get SIGTERM (Ctrl-C, systemd's stop).
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    sleep = RecordingSleep(1)
    supervisor = Supervisor(sleeper, name="dispatcher", sleep=sleep).start()
    with caplog.at_level("WARNING", logger="kwai_bridge.supervisor"):
        supervisor.winding_down()
        pid = supervisor.pid
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: supervisor.pid is None, what="the child to end", timeout=30)
        supervisor.stop()
    assert sleep.delays == [] and caplog.records == []
