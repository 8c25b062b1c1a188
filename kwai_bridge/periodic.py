"""A background thread doing one step every so often until it is stopped: the
dispatcher's alert checks and its platform jobs (subscriptions watched, orders
reconciled) each run on one.

A step that raises is logged and tried again at the next interval: a database that
refuses one query must not end the thread for the rest of the process's life.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Runs `step()` at once, then every `interval` seconds, on a daemon thread."""

    def __init__(self, step: Callable[[], object], *, interval: float, name: str,
                 join_timeout: float = 30.0) -> None:
        self.step = step
        self.interval = interval
        self.name = name
        self.join_timeout = join_timeout
        #: Set by `stop`; a step's own waits (a retry's delay) wait on it to end early.
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "Periodic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.join_timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:
                log.exception("%s failed; trying again in %g s", self.name, self.interval)
            self.stopping.wait(self.interval)


__all__ = ["Periodic"]
