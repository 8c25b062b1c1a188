"""When to send an event again after a passing failure: a schedule and a pure function.

The schedule is spec/kwai-event-api.md's: 10 s, 1 min, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h, 24 h (about three days in all), each wait varied by +-20%. Randomness and
the clock come in as parameters, so a test can pin both. A `Retry-After` longer than the
wait wins, up to the schedule's longest wait.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from random import Random

#: Seconds to wait after the 1st, 2nd, ... failure.
RETRY_SCHEDULE: tuple[int, ...] = (
    10, 60, 300, 1800, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
)
#: Each wait is multiplied by a factor drawn uniformly from [1 - JITTER, 1 + JITTER].
JITTER = 0.2
#: The last failure count that still earns a retry: an event is sent at most
#: MAX_ATTEMPTS + 1 times (the first send, then one per step of the schedule).
MAX_ATTEMPTS = len(RETRY_SCHEDULE)
#: The longest wait a Retry-After can ask for: a server asking for years (or for more
#: seconds than a date can hold) gets the schedule's longest wait instead.
RETRY_AFTER_LIMIT: int = max(RETRY_SCHEDULE)


def next_attempt_at(
    attempts: int, *, now: datetime, rng: Random, retry_after: float | None = None
) -> datetime | None:
    """Return when to try again after `attempts` failures (1 = the first), or None to give up.

    A Retry-After (seconds) longer than the scheduled wait wins, up to RETRY_AFTER_LIMIT;
    a shorter one, a negative one or NaN is ignored.
    """
    if attempts < 1:
        raise ValueError(f"attempts counts failures and starts at 1, not {attempts}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if attempts > MAX_ATTEMPTS:
        return None
    wait = RETRY_SCHEDULE[attempts - 1] * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None and retry_after > wait:
        wait = max(wait, min(retry_after, RETRY_AFTER_LIMIT))
    return now + timedelta(seconds=wait)


__all__ = ["JITTER", "MAX_ATTEMPTS", "RETRY_AFTER_LIMIT", "RETRY_SCHEDULE", "next_attempt_at"]
