"""The worker's converter: it turns the deliveries the webhook path stored as received
(`KWAI_BRIDGE_CONVERSION=worker`) into events, a batch per transaction, moments after
they arrive.

Several converters (threads of one worker, worker processes on one machine or many)
share the work: on PostgreSQL each batch is locked for the converter that took it and
the others take the next ones; on SQLite, one writer at a time, one converter thread
runs per worker. Should two still settle one delivery, `Outbox.settle_received` lets the
first one's events stand and the other adds none. A converter that dies mid-batch has
stored nothing of it; the next pass converts those deliveries again.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from kwai_bridge.db import database_errors
from kwai_bridge.pipeline import CONVERT_BATCH, Pipeline

log = logging.getLogger(__name__)

#: Seconds between two looks while nothing waits: on an idle worker a delivery's events
#: exist this long after its answer at most, and each look is one indexed query.
IDLE_WAIT = 0.05
#: Seconds to wait after a pass failed (the database restarting, say) before the next.
ERROR_WAIT = 1.0
#: Converter threads per worker on PostgreSQL: a conversion waits on a few round trips
#: (the click store, the rows), which other threads' conversions fill.
POSTGRES_THREADS = 4
#: Seconds between two looks of the threads after the first while nothing waits: an
#: idle worker asks the database some twenty times a second, not eighty; in a burst they
#: join within this long.
HELPER_IDLE_WAIT = 1.0


class Converter:
    """Runs `Pipeline.convert_received`: until nothing waits (`drain`), or in threads
    until told to stop (`start`)."""

    def __init__(self, pipeline: Pipeline, *, clock: Callable[[], datetime], idle_wait: float = IDLE_WAIT,
                 error_wait: float = ERROR_WAIT, batch: int = CONVERT_BATCH, threads: int | None = None) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.idle_wait = idle_wait
        self.error_wait = error_wait
        self.batch = batch
        postgres = pipeline.outbox.engine.dialect.name == "postgresql"
        self.threads = threads if threads is not None else POSTGRES_THREADS if postgres else 1

    def drain(self) -> int:
        """Convert every delivery waiting, in `self.threads` threads; return how many."""
        done: list[int] = []
        errors: list[BaseException] = []

        def convert() -> None:
            total = 0
            try:
                while True:
                    taken = self.pipeline.convert_received(now=self.clock(), limit=self.batch)
                    total += taken
                    if taken < self.batch:  # none left but what other threads hold
                        break
            except BaseException as exc:  # raised below, in the caller's thread
                errors.append(exc)
            done.append(total)

        threads = [threading.Thread(target=convert, name=f"converter-{n}") for n in range(self.threads - 1)]
        for thread in threads:
            thread.start()
        convert()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return sum(done)

    def run(self, stop: threading.Event, *, idle_wait: float | None = None) -> None:
        """Convert batches until `stop` is set, looking again after `idle_wait` seconds
        (`self.idle_wait` by default) when none was full; a failed pass is logged and
        tried again."""
        idle_wait = self.idle_wait if idle_wait is None else idle_wait
        while not stop.is_set():
            try:
                done = self.pipeline.convert_received(now=self.clock(), limit=self.batch)
            except database_errors() as exc:
                log.error("conversion paused, the database failed: %s", str(exc).split("\n", 1)[0])
                stop.wait(self.error_wait)
                continue
            except Exception:
                log.exception("conversion pass failed; trying again")
                stop.wait(self.error_wait)
                continue
            if done < self.batch:
                stop.wait(idle_wait)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        """`self.threads` threads running `run` until `stop` is set; the first looks for
        work every `idle_wait`, the others every HELPER_IDLE_WAIT while there is little."""
        waits = [self.idle_wait] + [max(self.idle_wait, HELPER_IDLE_WAIT)] * (self.threads - 1)
        threads = [threading.Thread(target=self.run, args=(stop,), kwargs={"idle_wait": wait},
                                    name=f"converter-{n}", daemon=True) for n, wait in enumerate(waits)]
        for thread in threads:
            thread.start()
        return threads
