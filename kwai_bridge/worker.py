"""The dispatcher: claims due events from the outbox, sends them to Kwai concurrently
over one client, at the pace the pacer finds, and records each outcome.

Storage (kwai_bridge.outbox), the loop (this module), the pace (kwai_bridge.pacing) and
the retry policy (kwai_bridge.retry) are kept apart. Time comes from `clock`, randomness
from `rng`, so tests never sleep.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from random import Random
from time import perf_counter
from typing import Callable

from kwai_bridge import metrics
from kwai_bridge.catalog import StoreRegistry
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import EventStatus
from kwai_bridge.heartbeat import DISPATCHER, Heartbeats, Pacemaker
from kwai_bridge.outbox import Claimed, Finish, Outbox
from kwai_bridge.pacing import Answer, Pacer, pace_answer
from kwai_bridge.retry import next_attempt_at
from kwai_bridge.senders import Gate, Senders, seconds
from kwai_bridge.kwai.client import (
    TOKEN_REFUSED, Dead, Delivered, KwaiClient, Rejected, RetryLater, SendResult,
)
from kwai_bridge.kwai.events import EventError

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: The error recorded on events held because Kwai refused their store's access token.
HELD_FOR_TOKEN = f"access token refused by Kwai ({TOKEN_REFUSED})"


@dataclass(frozen=True)
class HoldStore:
    """Kwai refused the store's access token: record `finish`, and hold the store's
    pending events too (an effect `Dispatcher._settle` applies)."""

    store: StoreConfig
    finish: Finish


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Dispatcher:
    """Delivers the outbox to Kwai with at most `concurrency` requests in flight, fewer
    while the pacer (by default `Pacer(cap=concurrency)`) finds Kwai slow or refusing."""

    def __init__(self, *, outbox: Outbox, registry: StoreRegistry, client: KwaiClient,
                 concurrency: int = 64, lease_seconds: float = 90.0,
                 clock: Clock = utcnow, rng: Random | None = None, owner: str | None = None,
                 heartbeats: Heartbeats | None = None, pacer: Pacer | None = None) -> None:
        self.outbox = outbox
        self.registry = registry
        self.client = client
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.pacer = pacer or Pacer(cap=self.concurrency)
        self._gate = Gate(self.pacer, clock=seconds(clock))
        # A row is sent only while its lease outlasts the longest a send may take.
        self._send_budget = timedelta(seconds=sum(client.timeout))
        self.rng = rng or Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        # Where a running loop (not `once`) records that it is alive.
        self.heartbeats = heartbeats
        # store id -> the access token Kwai refused; cleared when the token changes.
        self._refused_tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        # Stores of the rows last claimed that have events held for a refused token
        # in the database.
        self._held_in_db: frozenset[str] = frozenset()
        # When expired leases and held stores were last looked for (see `_settle`).
        self._rechecked_at: datetime | None = None
        self._rechecked_stores: frozenset[str] = frozenset()

    # -- one event ------------------------------------------------------------------
    def _send(self, row: Claimed, store: StoreConfig) -> SendResult:
        started = perf_counter()
        result = self.client.send(row.event, pixel_id=store.pixel_id, access_token=store.access_token,
                                  track_flag=store.test_mode, method=store.send_method)
        metrics.kwai_request(result, seconds=perf_counter() - started)
        return result

    def _token_refused(self, store: StoreConfig) -> bool:
        with self._lock:
            refused = self._refused_tokens.get(store.id)
            if refused is not None and refused != store.access_token:
                del self._refused_tokens[store.id]
                refused = None
        # Held by another dispatcher, or by this one before a restart: until the operator
        # replays, the held rows say so.
        return refused is not None or store.id in self._held_in_db

    def attempt(self, leased: tuple[Claimed, datetime]) -> Recorder:
        """Send one claimed row leased until the given time (in a sender thread) when the
        pacer lets it go; return how to decide its outcome, which the loop records for
        every ready row in one transaction (`_settle`)."""
        row, lease_until = leased
        store = self.registry.get(row.store_id)
        if store is None:
            return partial(Finish, row.id, EventStatus.HELD, error=f"store {row.store_id} is not configured")
        if self._token_refused(store):
            return partial(Finish, row.id, EventStatus.HELD, error=HELD_FOR_TOKEN, result=TOKEN_REFUSED)
        sent_at = self._gate.enter()
        answer, retry_after = Answer.NONE, None
        try:
            if self.clock() + self._send_budget > lease_until:
                # It waited for the pacer so long that Kwai's answer might come after
                # the lease, when another claim may have sent the row again.
                log.info("event %s (%s): not sent, its lease would run out first; it comes back then",
                         row.id, row.store_id)
                return _left_to_lease
            result = self._send(row, store)
            answer, retry_after = pace_answer(result)
        except EventError as exc:
            log.error("event %s (%s): refused before sending: %s", row.id, row.store_id, exc)
            return partial(Finish, row.id, EventStatus.DEAD, error=str(exc))
        finally:
            self._gate.leave(answer, sent_at=sent_at, retry_after=retry_after)
        if answer is Answer.THROTTLED:
            log.info("event %s (%s): Kwai answered 429; now at most %d in flight, %s", row.id, row.store_id,
                     self.pacer.limit, _describe_rate(self.pacer.rate(now=sent_at)))
        return partial(self._decide, row, store, result)

    def _decide(self, row: Claimed, store: StoreConfig, result: SendResult, now: datetime) -> Finish | HoldStore:
        """What to record for `row` given Kwai's answer; no effect of its own."""
        outcome = result.outcome
        if isinstance(outcome, Delivered):
            return Finish(row.id, EventStatus.SENT, now, response=result.body, result=1)
        if isinstance(outcome, Rejected):
            if outcome.token_refused:
                return HoldStore(store, Finish(row.id, EventStatus.HELD, now, error=HELD_FOR_TOKEN,
                                               response=result.body, result=TOKEN_REFUSED))
            log.warning("event %s (%s): rejected by Kwai with %s", row.id, row.store_id, outcome.code)
            return Finish(row.id, EventStatus.DEAD, now, error=f"Kwai rejected ({outcome.code}): {outcome.message}",
                          response=result.body, result=outcome.code)
        if isinstance(outcome, RetryLater):
            attempts = row.attempts + 1
            when = next_attempt_at(attempts, now=now, rng=self.rng, retry_after=outcome.retry_after)
            if when is None:
                log.warning("event %s (%s): dead after %d attempts", row.id, row.store_id, attempts)
                return Finish(row.id, EventStatus.DEAD, now, error=f"gave up after {attempts} attempts: {outcome.reason}",
                              response=result.body)
            return Finish(row.id, EventStatus.PENDING, now, error=outcome.reason, response=result.body,
                          next_attempt_at=when)
        assert isinstance(outcome, Dead)
        log.warning("event %s (%s): dead: %s", row.id, row.store_id, outcome.reason)
        return Finish(row.id, EventStatus.DEAD, now, error=outcome.reason, response=result.body)

    def _hold_store(self, hold: HoldStore) -> Finish:
        """Hold the store's pending events (in `_settle`'s transaction); return the
        refused row's outcome."""
        store, now = hold.store, hold.finish.now
        with self._lock:
            first = store.id not in self._refused_tokens
            self._refused_tokens[store.id] = store.access_token
        held = self.outbox.hold_store(store.id, now=now, error=HELD_FOR_TOKEN, result=TOKEN_REFUSED)
        if first:
            log.error("store %s: Kwai refused the access token (%d); %d pending event(s) held. "
                      "Fix access_token in the stores file, reload, then run "
                      "`kwai-bridge events replay --store %s --result %d`.",
                      store.id, TOKEN_REFUSED, held + 1, store.id, TOKEN_REFUSED)
        return hold.finish

    # -- the loop -------------------------------------------------------------------
    def run(self, *, stop: threading.Event | None = None, once: bool = False,
            poll_interval: float = 1.0) -> dict[str, int]:
        """Send until `stop` is set (finishing what is in flight), or with `once`, until
        nothing is due. Returns how many events ended in each status.

        Unless `once`, the loop beats in `heartbeats` while it runs and removes its row
        when it returns (a loop that dies leaves its row, which then grows stale)."""
        stop = stop or threading.Event()
        pacemaker = None
        if self.heartbeats is not None and not once:
            pacemaker = Pacemaker(self.heartbeats, role=DISPATCHER, owner=self.owner)
            pacemaker.start(self.clock())
        tally: dict[str, int] = {}
        done: list[Recorder | None] = []
        idle = 0  # passes in a row that found nothing to send
        senders = Senders(self.attempt, self.concurrency)
        try:
            while True:
                if pacemaker is not None:
                    pacemaker.tick(self.clock())
                # Claimed rows may queue for the senders beyond the pacer's limit, so
                # that a sender never waits for the loop, and each pass (a fixed cost of
                # statements) records and claims many rows. While Kwai asked for a
                # pause, nothing new is claimed (and `once` ends with what is in flight).
                capacity = self._capacity()
                want = 0 if stop.is_set() or self._gate.paused() else capacity - senders.in_flight
                senders.submit(self._settle(done, tally, claim=want))
                if not senders.in_flight:
                    if once or stop.is_set():
                        break
                    idle += 1
                    stop.wait(idle_wait(idle, poll_interval=poll_interval))
                    done = []
                    continue
                idle = 0
                # At capacity, wait for a sender; otherwise look for newly due rows at
                # least every poll interval.
                full = senders.in_flight >= capacity or stop.is_set()
                done = senders.collect(timeout=None if full else poll_interval)
        finally:
            senders.close()
        if pacemaker is not None:
            pacemaker.stop()
        return tally

    def _capacity(self) -> int:
        """Rows to keep claimed: PREFETCH x the pacer's limit, but no more than the
        senders start, at the fastest round trip, within half of what a lease leaves
        beyond a send (a row that waits longer is not sent: see `attempt`)."""
        limit, fastest = self._gate.limit, self.pacer.baseline
        margin = self.lease_seconds - self._send_budget.total_seconds()
        if not 0 < fastest < math.inf:
            return PREFETCH * limit
        return max(limit, min(PREFETCH * limit, limit + int(margin / 2 * limit / fastest)))

    def _settle(self, done: list[Recorder | None], tally: dict[str, int], *,
                claim: int) -> list[tuple[Claimed, datetime]]:
        """Record every finished attempt and claim up to `claim` due rows, in one
        transaction: on SQLite each commit is an fsync, and one per event would cap
        throughput far below what Kwai can take. `None` in `done` is an attempt that
        failed unexpectedly (a fault of ours): its lease expires and the row comes back."""
        recorders = [decide for decide in done if decide is not None]
        if len(recorders) < len(done):
            tally["error"] = tally.get("error", 0) + len(done) - len(recorders)
        decisions: list[Finish | HoldStore] = []
        try:
            with self.outbox.batch():
                now = self.clock()  # one time for the batch, so that alike outcomes share a statement
                decisions = [d for d in (_decided(decide, now, tally) for decide in recorders) if d is not None]
                finishes = [self._hold_store(d) if isinstance(d, HoldStore) else d for d in decisions]
                self.outbox.finish_many(finishes, owner=self.owner)
                # Expired leases (left by a dispatcher that died) and holds placed by
                # another dispatcher are rare: look for them once per RECHECK_SECONDS,
                # for a store claimed for the first time, and while a claimed store is
                # held (an operator's replay lifts it), not on every pass. Each statement
                # is a GIL hand-over for this loop, which the sender threads wait on.
                last = self._rechecked_at
                recheck = last is None or not 0 <= (now - last).total_seconds() < RECHECK_SECONDS
                rows = self.outbox.claim_for_sending(now=now, limit=claim, lease_seconds=self.lease_seconds,
                                                     owner=self.owner, recover_expired=recheck) if claim > 0 else []
                stores = frozenset(row.store_id for row in rows)
                if rows and (recheck or not stores <= self._rechecked_stores or stores & self._held_in_db):
                    self._held_in_db = frozenset(self.outbox.held_stores(stores | self._rechecked_stores,
                                                                         result=TOKEN_REFUSED))
                    self._rechecked_stores |= stores
                if recheck and claim > 0:  # a pass that claims nothing looked for nothing
                    self._rechecked_at = now
        except Exception:  # a storage fault: the leases expire and the rows come back
            log.exception("recording %d outcome(s) failed; those events return when their lease expires",
                          len(decisions))
            tally["error"] = tally.get("error", 0) + len(decisions)
            return []
        for finish in finishes:
            tally[finish.status] = tally.get(finish.status, 0) + 1
        lease_until = now + timedelta(seconds=self.lease_seconds)
        return [(row, lease_until) for row in rows]


def _decided(decide: Recorder, now: datetime, tally: dict[str, int]) -> Finish | HoldStore | None:
    """`decide(now)`, or None when it fails (a fault of ours): that row's lease expires and
    it comes back, while the others of the batch are recorded."""
    try:
        return decide(now)
    except Exception:
        log.exception("deciding an outcome failed; that event returns when its lease expires")
        tally["error"] = tally.get("error", 0) + 1
        return None


#: How often the loop looks for expired leases and for stores held by another dispatcher.
RECHECK_SECONDS = 1.0

#: Claimed rows wait for a sender in a queue up to PREFETCH x the pacer's limit long.
PREFETCH = 4

#: After a pass that found nothing to send, the first wait before looking again.
IDLE_FIRST_WAIT = 0.05


def idle_wait(idle: int, *, poll_interval: float) -> float:
    """Seconds to wait after `idle` passes in a row found nothing to send: IDLE_FIRST_WAIT,
    doubling up to the poll interval. Events that trickle in are sent as they come; left
    to gather for a whole interval, they would leave in a burst of sends that takes the
    CPU and the SQLite writer lock from webhooks for a moment."""
    return min(poll_interval, IDLE_FIRST_WAIT * 2.0 ** min(idle - 1, 32))

#: Decides a sent row's outcome at the time the loop records it; None: nothing to record.
Recorder = Callable[[datetime], "Finish | HoldStore | None"]


def _left_to_lease(now: datetime) -> None:
    """A row not sent because its lease would run out first: its lease expires and the
    row comes back, with no attempt counted."""
    return None


def _describe_rate(rate: float | None) -> str:
    return "no cap on the rate" if rate is None else f"at most {rate:.1f} requests/s"
