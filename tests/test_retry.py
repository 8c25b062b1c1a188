"""The retry policy as a table: each step's bounds, Retry-After, and the end."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from kwai_bridge.retry import JITTER, MAX_ATTEMPTS, RETRY_AFTER_LIMIT, RETRY_SCHEDULE, next_attempt_at

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class EdgeRng:
    """Stands in for random.Random: uniform() returns the low or the high edge."""

    def __init__(self, edge: str) -> None:
        self.edge = edge
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a if self.edge == "low" else b


# (attempts, shortest wait, longest wait) in seconds, from the spec's schedule +-20%.
STEPS = [
    (1, 8, 12),
    (2, 48, 72),
    (3, 240, 360),
    (4, 1440, 2160),
    (5, 5760, 8640),
    (6, 14400, 21600),
    (7, 28800, 43200),
    (8, 40320, 60480),
    (9, 57600, 86400),
    (10, 69120, 103680),
]


def test_schedule_is_the_spec():
    assert RETRY_SCHEDULE == (10, 60, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert JITTER == 0.2
    assert MAX_ATTEMPTS == len(STEPS) == 10
    assert RETRY_AFTER_LIMIT == 86400
    assert 3 * 86400 < sum(RETRY_SCHEDULE) < 4 * 86400  # "about three days in all"


@pytest.mark.parametrize("attempts, low, high", STEPS)
def test_each_step_bounds(attempts, low, high):
    low_rng, high_rng = EdgeRng("low"), EdgeRng("high")
    assert next_attempt_at(attempts, now=NOW, rng=low_rng) == NOW + timedelta(seconds=low)
    assert next_attempt_at(attempts, now=NOW, rng=high_rng) == NOW + timedelta(seconds=high)
    assert low_rng.calls == [(0.8, 1.2)]


@pytest.mark.parametrize("attempts, low, high", STEPS)
def test_real_rng_stays_within_bounds(attempts, low, high):
    rng = random.Random(attempts)
    for _ in range(50):
        wait = (next_attempt_at(attempts, now=NOW, rng=rng) - NOW).total_seconds()
        assert low <= wait <= high


@pytest.mark.parametrize(
    "attempts, retry_after, expected",
    [
        (1, 120.0, 120.0),      # longer than 8-12 s: wins
        (1, 5.0, 12.0),         # shorter: the schedule's wait (high edge) stands
        (1, 12.0, 12.0),
        (3, 3600.0, 3600.0),
        (3, 30.0, 360.0),
        (10, 200000.0, 103680.0),  # past the limit (24 h), but the step's own wait is longer
        (2, None, 72.0),
        # Absurd values from a broken server: never a wait of years, never an overflow.
        (1, 86400.0, 86400.0),
        (1, 86401.0, 86400.0),
        (1, 1e9, 86400.0),
        (1, 1e20, 86400.0),
        (1, float("inf"), 86400.0),
        (1, -5.0, 12.0),
        (1, float("nan"), 12.0),
    ],
)
def test_retry_after_longer_wins(attempts, retry_after, expected):
    at = next_attempt_at(attempts, now=NOW, rng=EdgeRng("high"), retry_after=retry_after)
    assert at == NOW + timedelta(seconds=expected)


@pytest.mark.parametrize("attempts", [MAX_ATTEMPTS + 1, MAX_ATTEMPTS + 5, 100])
def test_after_the_last_step_dead(attempts):
    assert next_attempt_at(attempts, now=NOW, rng=EdgeRng("low"), retry_after=60) is None


@pytest.mark.parametrize(
    "attempts, now",
    [(0, NOW), (-1, NOW), (1, datetime(2024, 5, 1, 12, 0))],
)
def test_bad_arguments(attempts, now):
    with pytest.raises(ValueError):
        next_attempt_at(attempts, now=now, rng=EdgeRng("low"))
