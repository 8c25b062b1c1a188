"""The worker's converter: it turns the deliveries the webhook path stored as received
(`KWAI_BRIDGE_CONVERSION=worker`) into events, a batch per transaction, moments after
they arrive.

Several converters (one per worker process, on one machine or many) may look at the
same deliveries: `Outbox.settle_received` lets the first one's events stand and the
others add none. A converter that dies mid-batch has stored nothing of it; the next
pass converts those deliveries again.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from kwai_bridge.db import database_errors
from kwai_bridge.pipeline import CONVERT_BATCH, Pipeline

log = logging.getLogger(__name__)

#: Seconds between two looks while nothing waits: a delivery's events exist this long
#: after its answer at most, and an idle worker costs one indexed query per look.
IDLE_WAIT = 0.05
#: Seconds to wait after a pass failed (the database restarting, say) before the next.
ERROR_WAIT = 1.0


class Converter:
    def __init__(self, pipeline: Pipeline, *, clock: Callable[[], datetime], idle_wait: float = IDLE_WAIT,
                 error_wait: float = ERROR_WAIT, batch: int = CONVERT_BATCH) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.idle_wait = idle_wait
        self.error_wait = error_wait
        self.batch = batch

    def drain(self) -> int:
        """Convert every delivery waiting; return how many."""
        total = 0
        while True:
            done = self.pipeline.convert_received(now=self.clock(), limit=self.batch)
            total += done
            if done < self.batch:
                return total

    def run(self, stop: threading.Event) -> None:
        """Convert batches until `stop` is set; a failed pass is logged and tried again."""
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
                stop.wait(self.idle_wait)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="converter", daemon=True)
        thread.start()
        return thread
