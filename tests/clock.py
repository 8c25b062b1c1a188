"""The clock tests move by hand: code that waits on time takes its clock as a parameter."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


class Clock:
    """Answers `now` when called; moved by `advance` (seconds or a timedelta) or `at`
    (a time relative to where it started)."""

    def __init__(self, now: datetime = T0) -> None:
        self.start = self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: float | timedelta) -> None:
        self.now += by if isinstance(by, timedelta) else timedelta(seconds=by)

    def at(self, delta: timedelta) -> None:
        self.now = self.start + delta
