"""The dispatcher: claims due events from the outbox, sends them to Kwai concurrently
over one client, and records each outcome.

Storage (bridge.outbox), the loop (this module) and the retry policy (bridge.retry)
are kept apart. Time comes from `clock`, randomness from `rng`, so tests never sleep.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from random import Random
from typing import Callable

from bridge.config import StoreConfig, StoreRegistry
from bridge.outbox import EventRow, Outbox
from bridge.retry import next_attempt_at
from kwai.client import Dead, Delivered, KwaiClient, Rejected, RetryLater, SendResult
from kwai.events import EventError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Dispatcher:
    """Delivers the outbox to Kwai with at most `concurrency` requests in flight."""

    def __init__(self, *, outbox: Outbox, registry: StoreRegistry, client: KwaiClient,
                 concurrency: int = 16, lease_seconds: float = 90.0,
                 clock: Clock = utcnow, rng: Random | None = None, owner: str | None = None) -> None:
        self.outbox = outbox
        self.registry = registry
        self.client = client
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.rng = rng or Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        # store id -> the access token Kwai refused; cleared when the token changes.
        self._refused_tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- one event ------------------------------------------------------------------
    def _send(self, row: EventRow, store: StoreConfig) -> SendResult:
        return self.client.send(row.event, pixel_id=store.pixel_id, access_token=store.access_token,
                                track_flag=store.test_mode, method=store.send_method)

    def _token_refused(self, store: StoreConfig) -> bool:
        with self._lock:
            refused = self._refused_tokens.get(store.id)
            if refused is not None and refused != store.access_token:
                del self._refused_tokens[store.id]
                return False
            return refused is not None

    def _hold_store(self, store: StoreConfig, row: EventRow, result: SendResult) -> None:
        now = self.clock()
        with self._lock:
            first = store.id not in self._refused_tokens
            self._refused_tokens[store.id] = store.access_token
        self.outbox.mark_held(row.id, now=now, error="access token refused by Kwai (10006)",
                              response=result.body, result=10006, owner=self.owner)
        held = self.outbox.hold_store(store.id, now=now, error="access token refused by Kwai (10006)")
        if first:
            log.error("store %s: Kwai refused the access token (10006); %d pending event(s) held. "
                      "Fix access_token in the stores file, reload, then run "
                      "`kwai-bridge events replay --store %s --result 10006`.", store.id, held + 1, store.id)

    def process(self, row: EventRow) -> str:
        """Send one claimed row and record the outcome; returns the status it ended in."""
        store = self.registry.stores.get(row.store_id)
        now = self.clock()
        if store is None:
            self.outbox.mark_held(row.id, now=now, error=f"store {row.store_id} is not configured",
                                  response="", result=None, owner=self.owner)
            return "held"
        if self._token_refused(store):
            self.outbox.mark_held(row.id, now=now, error="access token refused by Kwai (10006)",
                                  response="", result=10006, owner=self.owner)
            return "held"
        try:
            result = self._send(row, store)
        except EventError as exc:
            self.outbox.mark_dead(row.id, now=self.clock(), error=str(exc), response="", owner=self.owner)
            log.error("event %s (%s): refused before sending: %s", row.id, row.store_id, exc)
            return "dead"
        return self._record(row, store, result)

    def _record(self, row: EventRow, store: StoreConfig, result: SendResult) -> str:
        now = self.clock()
        outcome = result.outcome
        if isinstance(outcome, Delivered):
            self.outbox.mark_sent(row.id, now=now, response=result.body, owner=self.owner)
            return "sent"
        if isinstance(outcome, Rejected):
            if outcome.token_refused:
                self._hold_store(store, row, result)
                return "held"
            self.outbox.mark_dead(row.id, now=now, error=f"Kwai rejected ({outcome.code}): {outcome.message}",
                                  response=result.body, result=outcome.code, owner=self.owner)
            log.warning("event %s (%s): rejected by Kwai with %s", row.id, row.store_id, outcome.code)
            return "dead"
        if isinstance(outcome, RetryLater):
            attempts = row.attempts + 1
            when = next_attempt_at(attempts, now=now, rng=self.rng, retry_after=outcome.retry_after)
            if when is None:
                self.outbox.mark_dead(row.id, now=now, error=f"gave up after {attempts} attempts: {outcome.reason}",
                                      response=result.body, owner=self.owner)
                log.warning("event %s (%s): dead after %d attempts", row.id, row.store_id, attempts)
                return "dead"
            self.outbox.mark_retry(row.id, now=now, next_attempt_at=when, error=outcome.reason,
                                   response=result.body, owner=self.owner)
            return "pending"
        assert isinstance(outcome, Dead)
        self.outbox.mark_dead(row.id, now=now, error=outcome.reason, response=result.body, owner=self.owner)
        log.warning("event %s (%s): dead: %s", row.id, row.store_id, outcome.reason)
        return "dead"

    # -- the loop -------------------------------------------------------------------
    def run(self, *, stop: threading.Event | None = None, once: bool = False,
            poll_interval: float = 1.0) -> dict[str, int]:
        """Send until `stop` is set (finishing what is in flight), or with `once`, until
        nothing is due. Returns how many events ended in each status."""
        stop = stop or threading.Event()
        tally: dict[str, int] = {}
        in_flight: set[Future] = set()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="kwai-send") as pool:
            while True:
                if not stop.is_set():
                    free = self.concurrency - len(in_flight)
                    rows = self.outbox.claim_due(now=self.clock(), limit=free,
                                                 lease_seconds=self.lease_seconds, owner=self.owner) if free else []
                    in_flight.update(pool.submit(self.process, row) for row in rows)
                else:
                    rows = []
                if not in_flight:
                    if once or stop.is_set():
                        break
                    stop.wait(poll_interval)
                    continue
                # A full pool waits for a free slot; otherwise look for new due rows
                # at least every poll interval.
                full = len(in_flight) >= self.concurrency or stop.is_set()
                done, in_flight = _wait(in_flight, timeout=None if full else poll_interval)
                for fut in done:
                    try:
                        status = fut.result()
                    except Exception:  # a storage fault: the lease expires and the row comes back
                        log.exception("dispatch failed; the event returns when its lease expires")
                        status = "error"
                    tally[status] = tally.get(status, 0) + 1
        return tally


def _wait(futures: set[Future], timeout: float | None) -> tuple[set[Future], set[Future]]:
    done, pending = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
    return set(done), set(pending)
