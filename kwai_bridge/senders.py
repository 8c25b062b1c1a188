"""The dispatcher's sender threads, and the gate that holds each request until the pacer
(kwai_bridge.pacing) lets it go."""
from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime
from typing import Callable, Generic, TypeVar

from kwai_bridge.pacing import Answer, Pacer

log = logging.getLogger(__name__)

#: The longest a sender sleeps before it asks the pacer again (an answer wakes it sooner).
RECHECK_WAIT = 0.5
#: Once one send has finished, how long to let others finish too, so that one commit
#: records several outcomes (a few milliseconds against Kwai's round trip).
GATHER_SECONDS = 0.003


class Gate:
    """The pacer shared by the sender threads: `enter` waits until a request may go,
    `leave` reports its answer and wakes as many waiting senders as may go now."""

    def __init__(self, pacer: Pacer, *, clock: Callable[[], float]) -> None:
        self.pacer = pacer
        self._clock = clock
        self._changed = threading.Condition(threading.Lock())

    def enter(self) -> float:
        """Wait until the pacer admits a request; return when it did (on `clock`)."""
        with self._changed:
            while True:
                now = self._clock()
                wait = self.pacer.admit(now=now)
                if wait <= 0:
                    return now
                # The clock may be a test's, which stands still: wake up to look again.
                self._changed.wait(min(wait, RECHECK_WAIT))

    def leave(self, answer: Answer, *, sent_at: float, retry_after: float | None = None) -> None:
        with self._changed:
            self.pacer.answered(answer, sent_at=sent_at, now=self._clock(), retry_after=retry_after)
            free = self.pacer.limit - self.pacer.in_flight
            if free > 0:
                self._changed.notify(free)

    @property
    def limit(self) -> int:
        return self.pacer.limit

    def paused(self) -> bool:
        """Whether Kwai asked for a pause (Retry-After) that still runs."""
        with self._changed:
            return self._clock() < self.pacer.paused_until


Item = TypeVar("Item")
Done = TypeVar("Done")


class Senders(Generic[Item, Done]):
    """`count` threads that run `attempt` on submitted items and collect what it returns
    (None when it raised).

    A plain queue and one condition rather than an executor's futures: the loop is one
    thread sharing the GIL with every sender, and a future per event (its lock, its
    waiters, a `wait` over the whole set on each pass) was CPU taken from the senders.
    """

    def __init__(self, attempt: Callable[[Item], Done], count: int) -> None:
        self._attempt = attempt
        self._todo: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._ready = threading.Condition(threading.Lock())
        self._done: list[Done | None] = []
        self.in_flight = 0  # submitted and not yet collected; changed under _ready
        self._threads = [threading.Thread(target=self._work, name=f"kwai-send_{n}", daemon=True)
                         for n in range(count)]
        for thread in self._threads:
            thread.start()

    def submit(self, items: list[Item]) -> None:
        if not items:
            return
        with self._ready:
            self.in_flight += len(items)
        for item in items:
            self._todo.put(item)

    def _work(self) -> None:
        while (item := self._todo.get()) is not None:
            try:
                done: Done | None = self._attempt(item)
            except Exception:
                log.exception("sending an event failed unexpectedly; it returns when its lease expires")
                done = None
            with self._ready:
                self._done.append(done)
                # Wake the loop for the first result and for the last one, not for each.
                if len(self._done) == 1 or len(self._done) == self.in_flight:
                    self._ready.notify()

    def collect(self, timeout: float | None) -> list[Done | None]:
        """Wait up to `timeout` for an attempt to finish, then up to GATHER_SECONDS for
        the others in flight; return (and forget) every finished one."""
        with self._ready:
            if not self._done:
                self._ready.wait(timeout)
            if self._done and len(self._done) < self.in_flight:
                self._ready.wait(GATHER_SECONDS)
            done, self._done = self._done, []
            self.in_flight -= len(done)
        return done

    def close(self) -> None:
        """Let the senders finish what was submitted, then stop them."""
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()


def seconds(clock: Callable[[], datetime]) -> Callable[[], float]:
    """A clock of aware datetimes as seconds, for the pacer."""
    return lambda: clock().timestamp()


__all__ = ["GATHER_SECONDS", "Gate", "Senders", "seconds"]
