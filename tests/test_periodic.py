"""The background thread the dispatcher's alert checks and platform jobs run on."""
from __future__ import annotations

import logging
import threading

from kwai_bridge.periodic import Periodic


def test_a_step_that_raises_is_logged_and_run_again(caplog):
    calls = []
    fourth = threading.Event()

    def step():
        calls.append(1)
        if len(calls) >= 4:
            fourth.set()
        if len(calls) <= 2:
            raise RuntimeError("database refused the query")

    caplog.set_level(logging.ERROR, logger="kwai_bridge.periodic")
    periodic = Periodic(step, interval=0.001, name="platform-jobs").start()
    try:
        assert fourth.wait(10), "the thread stopped after a step raised"
    finally:
        periodic.stop()
    failures = [r for r in caplog.records if "platform-jobs failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


def test_stop_ends_the_wait_between_steps_and_the_steps_own_waits():
    started = threading.Event()
    waited = []

    def step():
        started.set()
        # a step waiting (a retry's delay) on the same event ends when stopped
        waited.append(periodic.stopping.wait(3600))

    periodic = Periodic(step, interval=3600, name="alerts", join_timeout=10)
    periodic.start()
    assert started.wait(10)
    periodic.stop()
    assert not periodic.alive and waited == [True]
