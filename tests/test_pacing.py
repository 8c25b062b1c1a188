"""The pacer's rules as a table: given the requests in flight, their latencies and
Kwai's answers, the next concurrency (and rate cap, and pause). Time is a parameter."""
from __future__ import annotations

import math
from collections import deque

import pytest

from kwai_bridge.pacing import (
    BELIEVED_RETRY_AFTER, DECREASE, FLOOR, INITIAL, PACE_SPREAD, PAUSE_LIMIT, RATE_DECREASE, RATE_GROWTH, Answer,
    Pacer,
)

GOOD, THROTTLED, FAILED, NONE = Answer.GOOD, Answer.THROTTLED, Answer.FAILED, Answer.NONE
T0 = 1_000.0


class Driver:
    """Runs a script against a pacer: `("send", n)` admits n requests now, `("fill",)` as
    many as it admits, `("wait", s)` moves the clock, `(answer, n)` answers the n oldest
    requests in flight now (their latency is the time since they were sent),
    `(THROTTLED, n, retry_after)` too, and `("round", s)` is a round trip of a sender
    that keeps the limit in use: after s seconds, each request in flight is answered
    well and the freed places filled at once."""

    def __init__(self, pacer: Pacer, now: float = T0) -> None:
        self.pacer = pacer
        self.now = now
        self.sent: deque[float] = deque()

    def run(self, script) -> "Driver":
        for step in script:
            getattr(self, "_" + (step[0] if isinstance(step[0], str) else "answer"))(*step)
        return self

    def _send(self, _: str, n: int) -> None:
        for _ in range(n):
            assert self.pacer.admit(now=self.now) == 0, f"not admitted at {self.pacer.limit} in flight"
            self.sent.append(self.now)

    def _fill(self, _: str) -> None:
        while self.pacer.admit(now=self.now) == 0:
            self.sent.append(self.now)

    def _wait(self, _: str, seconds: float) -> None:
        self.now += seconds

    def _round(self, _: str, latency: float) -> None:
        self.now += latency
        for _ in range(len(self.sent)):
            self._answer(GOOD, 1)
            self._fill("fill")

    def _answer(self, answer: Answer, n: int, retry_after: float | None = None) -> None:
        for _ in range(n):
            self.pacer.answered(answer, sent_at=self.sent.popleft(), now=self.now, retry_after=retry_after)


def rounds(count: int, latency: float) -> list[tuple]:
    """`count` round trips of a sender keeping the limit in use, answered after `latency`."""
    return [("fill",)] + [("round", latency)] * count


# (what, cap, script, the limit after it)
LIMITS = [
    ("it starts at INITIAL", 64, [], INITIAL),
    ("... or at the cap when lower", 8, [], 8),
    ("slow start: one more for each good answer while the limit is in use", 64, rounds(1, 0.02), 32),
    ("slow start doubles each round trip up to the cap", 64, rounds(3, 0.02), 64),
    ("an answer that finds most of the limit unused adds nothing", 64,
     [("send", 4), ("wait", 0.02), (GOOD, 4)], INITIAL),
    ("a 5xx, a timeout or no connection multiplies the limit by DECREASE", 64,
     [("send", 16), ("wait", 0.02), (FAILED, 1)], int(INITIAL * DECREASE)),
    ("a 429 too", 64, [("send", 16), ("wait", 0.001), (THROTTLED, 1)], int(INITIAL * DECREASE)),
    ("failures of requests sent before the decrease count once", 64,
     [("send", 16), ("wait", 0.02), (FAILED, 16)], int(INITIAL * DECREASE)),
    ("a failure of a request sent after it decreases again", 64,
     [("send", 16), ("wait", 0.02), (FAILED, 16), ("send", 1), ("wait", 0.02), (FAILED, 1)],
     int(INITIAL * DECREASE * DECREASE)),
    ("never below the floor", 64,
     [step for _ in range(10) for step in (("send", 1), ("wait", 0.02), (FAILED, 1))], FLOOR),
    ("a request that never went out changes nothing", 64, [("send", 16), (NONE, 16)], INITIAL),
    ("after a decrease, one more per round trip of good answers", 64,
     [("send", 16), ("wait", 0.02), (FAILED, 16)] + rounds(3, 0.02), 14),
    ("a round a little faster than SLOW_FACTOR x the fastest answer + SLOW_MARGIN is fast", 64,
     rounds(1, 0.02) + [("round", 0.069)], 64),
    ("a slower round decreases", 64, rounds(1, 0.02) + [("round", 0.071)], int(64 * DECREASE)),
    ("a slow Kwai that stays slow is Kwai's pace, not a slow round", 64, rounds(4, 2.0), 64),
]


@pytest.mark.parametrize("what, cap, script, limit", LIMITS, ids=[row[0] for row in LIMITS])
def test_the_next_limit(what, cap, script, limit):
    assert Driver(Pacer(spread=math.inf, cap=cap)).run(script).pacer.limit == limit


def test_a_limit_in_use_waits_for_an_answer():
    pacer = Pacer(spread=math.inf, cap=2)
    assert [pacer.admit(now=T0) for _ in range(3)] == [0, 0, math.inf]
    pacer.answered(GOOD, sent_at=T0, now=T0 + 0.01)
    assert pacer.admit(now=T0 + 0.01) == 0


@pytest.mark.parametrize("cap, floor, expected", [(64, 2, 2), (1, 2, 1), (64, 0, 1)])
def test_the_floor_stays_within_one_and_the_cap(cap, floor, expected):
    assert Pacer(spread=math.inf, cap=cap, floor=floor).floor == expected


def test_a_cap_below_one_is_refused():
    with pytest.raises(ValueError):
        Pacer(spread=math.inf, cap=0)


def test_requests_are_spread_over_the_fastest_round_trip():
    pacer = Pacer(cap=64)
    assert [pacer.admit(now=T0) for _ in range(INITIAL)] == [0] * INITIAL  # no round trip known yet
    for _ in range(INITIAL):
        pacer.answered(GOOD, sent_at=T0, now=T0 + 0.2)
    now, limit = T0 + 0.2, pacer.limit
    interval = 0.2 / (PACE_SPREAD * limit)
    assert [pacer.admit(now=now) for _ in range(2)] == [0, 0]  # a slot missed while idle, and now's
    assert pacer.admit(now=now) == pytest.approx(interval)
    assert pacer.admit(now=now + interval) == 0


# -- the rate cap a 429 sets -----------------------------------------------------------
def steady(pacer: Pacer | Driver, *, rate: int, seconds: float, latency: float = 0.02) -> Driver:
    """`rate` requests a second, each answered well after `latency`, for `seconds`."""
    driver = pacer if isinstance(pacer, Driver) else Driver(pacer)
    for _ in range(int(rate * seconds)):
        driver.run([("send", 1), ("wait", latency), (GOOD, 1), ("wait", 1 / rate - latency)])
    return driver


def test_a_429_caps_the_rate_under_what_kwai_let_through():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=2)
    assert driver.pacer.rate(now=driver.now) is None
    driver.run([("send", 1), (THROTTLED, 1)])
    assert driver.pacer.rate(now=driver.now) == pytest.approx(RATE_DECREASE * 200, rel=0.02)
    # ... which then rises by RATE_GROWTH of itself a second.
    assert driver.pacer.rate(now=driver.now + 10) == pytest.approx(RATE_DECREASE * 200 * (1 + 10 * RATE_GROWTH),
                                                                   rel=0.02)


def test_a_429_soon_after_the_start_sets_no_rate_cap_only_the_limit():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=0.3)
    driver.run([("send", 1), (THROTTLED, 1)])
    assert driver.pacer.rate(now=driver.now) is None
    assert driver.pacer.limit == int(INITIAL * DECREASE)


def test_a_429_soon_after_the_last_cut_cuts_harder():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=2)
    driver.run([("send", 1), (THROTTLED, 1), ("wait", 0.1), ("send", 1), (THROTTLED, 1)])
    assert driver.pacer.rate(now=driver.now) == pytest.approx(DECREASE * RATE_DECREASE * 200, rel=0.03)


def test_a_later_429_cuts_under_what_kwai_let_through_since():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=2)
    driver.run([("send", 1), (THROTTLED, 1)])
    steady(driver, rate=100, seconds=2)
    driver.run([("send", 1), (THROTTLED, 1)])
    assert driver.pacer.rate(now=driver.now) == pytest.approx(RATE_DECREASE * 100, rel=0.03)


def test_the_rate_cap_spaces_the_requests_catching_up_one_missed_slot():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=2)
    driver.run([("send", 1), (THROTTLED, 1)])
    pacer, now = driver.pacer, driver.now
    interval = 1 / pacer.rate(now=now)
    assert [pacer.admit(now=now) for _ in range(2)] == [0, 0]  # the slot due one interval ago, and now's
    assert pacer.admit(now=now) == pytest.approx(interval, rel=1e-6)
    assert pacer.admit(now=now + interval) == 0


# -- Retry-After -------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after, pause", [
    (5, 5.0),
    (3600, PAUSE_LIMIT),  # believed, but every store shares the pause
    (BELIEVED_RETRY_AFTER + 1, 0.0),  # a server's mistake (years, a date at the end of time)
    (0, 0.0),
    (None, 0.0),
])
def test_retry_after_pauses_every_request(retry_after, pause):
    driver = Driver(Pacer(spread=math.inf, cap=64)).run([("send", 1), ("wait", 0.01), (THROTTLED, 1, retry_after)])
    pacer, now = driver.pacer, driver.now
    assert pacer.admit(now=now) == pytest.approx(pause)
    if pause:
        assert pacer.admit(now=now + pause - 0.001) > 0
        assert pacer.admit(now=now + pause) == 0


def test_time_paused_does_not_count_in_the_rate_kwai_let_through():
    driver = steady(Pacer(spread=math.inf, cap=64), rate=200, seconds=0.4)
    # Paused for 10 s: 120 good answers over 0.6 s of sending is still 200 a second.
    driver.run([("send", 1), ("wait", 0.01), (THROTTLED, 1, 10), ("wait", 10)])
    assert driver.pacer.rate(now=driver.now) is None  # too soon after the start to tell
    steady(driver, rate=200, seconds=0.2)
    driver.run([("send", 1), (THROTTLED, 1)])
    assert driver.pacer.rate(now=driver.now) == pytest.approx(RATE_DECREASE * 200, rel=0.03)

