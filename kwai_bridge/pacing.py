"""How fast to send to Kwai: a pure controller of concurrency and rate, fed with each
answer, that the dispatcher's senders consult before every request.

Kwai publishes no rate limit, so the pace is found, not configured: the number of
requests in flight grows while Kwai answers fast and well (doubling each round trip at
first, then one more per round trip) and shrinks by DECREASE on a slow round, a 429, a
5xx or a timeout, between a floor and a cap. A 429 also caps the request rate a little
under what Kwai let through, a cap that then rises slowly, and a Retry-After pauses all
sending. Requests are spread over the round trip rather than sent in waves. Time comes
in as `now` (seconds on any clock), so the rules are a table in the tests.
"""
from __future__ import annotations

import enum
import math
from collections import deque

from kwai_bridge.kwai.client import RetryLater, SendResult

#: Requests in flight at the start, and the least the controller goes down to.
INITIAL = 16
FLOOR = 4
#: On a slow round, a 429, a 5xx or a timeout, the limit is multiplied by this.
DECREASE = 0.7
#: A round is slow when its median latency exceeds SLOW_FACTOR x the baseline (the
#: fastest answer of the last BASELINE_SECONDS to 2 x BASELINE_SECONDS) + SLOW_MARGIN.
SLOW_FACTOR = 3.0
SLOW_MARGIN = 0.01
BASELINE_SECONDS = 30.0
#: After a 429 the rate is capped at RATE_DECREASE x the rate of good answers over the
#: last RATE_WINDOW seconds (of sending), or x the cap if lower (DECREASE x when the last
#: cut was less than RATE_WINDOW of sending ago), never below one request at a time at
#: the fastest latency seen, nor LEAST_RATE; the cap then rises by RATE_GROWTH of itself
#: per second.
RATE_DECREASE = 0.9
RATE_WINDOW = 1.0
#: Fewer good answers than this in the window are too few to tell a rate.
RATE_SAMPLES = 10
RATE_GROWTH = 0.01
LEAST_RATE = 1.0
#: Requests go no closer together than the fastest round trip spread over this many
#: times the limit: the answers to a wave of requests, all back at once, do not send the
#: next wave all at once (a burst of work that webhooks on the same machine would wait
#: behind), and bursts up to this many times the pace at the limit stay allowed.
PACE_SPREAD = 2.0
#: A Retry-After up to a day is believed and pauses sending, for PAUSE_LIMIT at most
#: (every store shares the pause); a longer one is a server's mistake and is ignored.
PAUSE_LIMIT = 60.0
BELIEVED_RETRY_AFTER = 86400.0


class Answer(enum.Enum):
    """What one request told about Kwai's health."""

    GOOD = "good"  # an answer from a Kwai at ease: delivered, or the event refused
    THROTTLED = "throttled"  # HTTP 429
    FAILED = "failed"  # 5xx, 408, a timeout, no connection, a 2xx that is not Kwai's
    NONE = "none"  # no request went out after all


class Pacer:
    """The pace of requests to Kwai; not thread-safe (the senders share it under a lock).

    `admit(now=)` before each request (0: go, and the request counts as in flight; else
    seconds to wait, `math.inf` until an answer frees a place), then `answered(...)`
    with the time `admit` let it go.
    """

    def __init__(self, *, cap: int, floor: int = FLOOR, initial: int = INITIAL, spread: float = PACE_SPREAD) -> None:
        if cap < 1:
            raise ValueError(f"cap must be at least 1, not {cap}")
        self.cap = cap
        self.spread = spread  # see PACE_SPREAD; inf: requests are not spaced
        self.floor = max(1, min(floor, cap))
        self._window = float(max(self.floor, min(initial, cap)))
        self.in_flight = 0
        self.slow_start = True  # until the first decrease: one more per good answer
        self._decreased_at = -math.inf  # answers to requests sent before it do not decrease again
        self._round: list[float] = []  # latencies of the good answers of this round
        self._round_size = 0  # answers that make this round: the limit when it began
        self._round_busy = False  # whether the limit was in use during this round
        self._fastest, self._fastest_before, self._bucket_at = math.inf, math.inf, -math.inf
        # When good answers came over the last RATE_WINDOW, on a clock that stands still
        # while sending is paused (see `_active`).
        self._good_at: deque[float] = deque()
        self._first_good_at: float | None = None
        self._rate_base: float | None = None  # requests/s; None: no cap on the rate
        self._rate_set_at = 0.0
        self._rate_set_active = -math.inf  # when it was set, on the clock of `_active`
        self._next_slot = -math.inf
        self.paused_until = -math.inf
        self._pause_from = -math.inf  # when the last pause began
        self._paused_before = 0.0  # seconds paused in the pauses before it

    # -- what it allows -------------------------------------------------------------
    @property
    def limit(self) -> int:
        """Requests that may be in flight now."""
        return int(self._window)

    def rate(self, *, now: float) -> float | None:
        """Requests per second allowed now; None: no cap."""
        if self._rate_base is None:
            return None
        return self._rate_base * (1 + RATE_GROWTH * max(0.0, now - self._rate_set_at))

    @property
    def baseline(self) -> float:
        """The fastest good answer lately, in seconds (inf before the first)."""
        return min(self._fastest, self._fastest_before)

    def admit(self, *, now: float) -> float:
        """0 when a request may go now (it is then counted in flight), else the seconds
        to wait before asking again (inf: until an answer comes)."""
        if now < self.paused_until:
            return self.paused_until - now
        if self.in_flight >= self.limit:
            return math.inf
        interval = self._interval(now=now)
        if interval > 0:
            if now < self._next_slot:
                return self._next_slot - now
            # A sender that woke late may use the slot it missed, not more.
            self._next_slot = max(self._next_slot, now - interval) + interval
        self.in_flight += 1
        return 0.0

    def _interval(self, *, now: float) -> float:
        """The least time between two requests: the rate cap's, or the limit spread over
        PACE_SPREAD of the fastest round trip, whichever is longer (0: none)."""
        rate = self.rate(now=now)
        capped = 0.0 if rate is None else 1 / rate
        fastest = self.baseline
        spread = fastest / (self.spread * self.limit) if 0 < fastest < math.inf else 0.0
        return max(capped, spread)

    # -- what it learns -------------------------------------------------------------
    def answered(self, answer: Answer, *, sent_at: float, now: float, retry_after: float | None = None) -> None:
        """Learn from the answer to a request `admit` let go at `sent_at`."""
        busy = self.in_flight >= self.limit / 2
        self.in_flight = max(0, self.in_flight - 1)
        # An answer to a request sent before the last decrease tells of the old pace:
        # it neither decreases again nor counts in the round that judges the new one.
        fresh = sent_at >= self._decreased_at
        if answer is Answer.GOOD:
            self._good(now - sent_at, now=now, busy=busy, fresh=fresh)
            return
        if answer is Answer.THROTTLED:
            if fresh:
                self._cap_rate(now=now)
            if retry_after is not None and 0 < retry_after <= BELIEVED_RETRY_AFTER:
                self._pause(min(retry_after, PAUSE_LIMIT), now=now)
        if answer is not Answer.NONE and fresh:
            self._decrease(now=now)

    def _good(self, latency: float, *, now: float, busy: bool, fresh: bool) -> None:
        self._sample(latency, now=now)
        if fresh and not self._round:
            self._round_size = max(self.limit, 4)
        if self.slow_start and busy:
            self._window = min(self.cap, self._window + 1)
        if not fresh:
            return
        self._round.append(latency)
        self._round_busy |= busy
        if len(self._round) < self._round_size:
            return
        # A round: about as many answers as requests in flight, so one round trip.
        median = sorted(self._round)[len(self._round) // 2]
        used = self._round_busy
        self._round, self._round_busy = [], False
        if median > SLOW_FACTOR * self.baseline + SLOW_MARGIN:
            self._decrease(now=now)
        elif used and not self.slow_start:
            self._window = min(self.cap, self._window + 1)

    def _sample(self, latency: float, *, now: float) -> None:
        if now - self._bucket_at >= BASELINE_SECONDS:
            recent = now - self._bucket_at < 2 * BASELINE_SECONDS
            self._fastest_before = self._fastest if recent else math.inf
            self._fastest, self._bucket_at = math.inf, now
        self._fastest = min(self._fastest, latency)
        active = self._active(now)
        if self._first_good_at is None:
            self._first_good_at = active
        self._good_at.append(active)
        self._let_through(active)

    def _let_through(self, active: float) -> float | None:
        """Good answers a second over the last RATE_WINDOW of sending; None when fewer
        than RATE_SAMPLES came or sending began less than half a window ago (the rate
        would then be mostly the ramp's)."""
        while self._good_at and self._good_at[0] <= active - RATE_WINDOW:
            self._good_at.popleft()
        span = 0.0 if self._first_good_at is None else min(RATE_WINDOW, active - self._first_good_at)
        if len(self._good_at) < RATE_SAMPLES or span < RATE_WINDOW / 2:
            return None
        return len(self._good_at) / span

    def _active(self, now: float) -> float:
        """`now` less the time spent paused: a rate counted on it is the rate while sending."""
        paused = 0.0 if self._pause_from == -math.inf else max(0.0, min(now, self.paused_until) - self._pause_from)
        return now - self._paused_before - paused

    def _pause(self, seconds: float, *, now: float) -> None:
        if now >= self.paused_until:  # a new pause: the last one is over
            if self._pause_from != -math.inf:
                self._paused_before += self.paused_until - self._pause_from
            self._pause_from = now
        self.paused_until = max(self.paused_until, now + seconds)

    def _cap_rate(self, *, now: float) -> None:
        """Cap the rate a little under what Kwai let through lately, or under the
        present cap when that is lower; with neither, no cap yet (the limit alone
        backs off meanwhile)."""
        active = self._active(now)
        candidates = [rate for rate in (self.rate(now=now), self._let_through(active)) if rate is not None]
        if not candidates:
            return
        # A 429 within a window of sending after the last cut: the cap is still well
        # above Kwai's limit (say, a burst after each pause was counted in), cut harder.
        factor = DECREASE if active - self._rate_set_active < RATE_WINDOW else RATE_DECREASE
        # Never below one request at a time: 429s that come whatever the pace (not a
        # rate limit) would otherwise lower the cap on and on.
        least = max(LEAST_RATE, 1 / self.baseline)
        self._rate_base = max(least, factor * min(candidates))
        self._rate_set_at, self._rate_set_active = now, active

    def _decrease(self, *, now: float) -> None:
        self._window = max(float(self.floor), self._window * DECREASE)
        self.slow_start = False
        self._decreased_at = now
        self._round, self._round_busy = [], False


def pace_answer(result: SendResult) -> tuple[Answer, float | None]:
    """What the Kwai client's result tells the pacer, and the Retry-After asked for."""
    status, outcome = result.status, result.outcome
    if status == 429:
        return Answer.THROTTLED, getattr(outcome, "retry_after", None)
    if status is None or status == 408 or status >= 500 or isinstance(outcome, RetryLater):
        return Answer.FAILED, None
    return Answer.GOOD, None


__all__ = ["Answer", "Pacer", "pace_answer"]
