"""The chaos test, short: a few hundred mixed webhooks from all three platforms while
the dispatcher, a web worker and serve itself are killed with SIGKILL and Kwai fails a
fifth of its requests; every acknowledged conversion is delivered, and twice only if it
was in flight at a kill. The long run is `benchmarks/chaos.py` (see tests/chaos.py)."""
from __future__ import annotations

import pytest

from tests.chaos import KILL_KINDS, Plan, run_chaos

pytestmark = pytest.mark.slow


def test_chaos(tmp_path, database_url):
    plan = Plan(webhooks=300, kills=KILL_KINDS, timeout=240)
    report = run_chaos(plan, database_url=database_url, workdir=tmp_path)
    assert not report.problems, report.summary() + "\n" + "\n".join(report.problems)
    assert report.acknowledged == plan.webhooks and report.kills == list(KILL_KINDS)
    assert report.lost == report.unexpected == 0
    assert report.duplicates <= report.in_flight
    assert sum(report.kwai_failures.values()) > 0, "Kwai should have failed some requests"
