"""The dispatcher at the pacer's pace: what each answer tells the pacer, the gate the
senders wait at, Retry-After held for every request, and a row whose lease would run out
while it waited. Real outbox, real client, the fake Kwai on loopback."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from random import Random

import pytest

from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox
from kwai_bridge.pacing import Answer, Pacer, pace_answer
from kwai_bridge.senders import Gate, seconds
from kwai_bridge.worker import Dispatcher, idle_wait
from kwai_bridge.kwai.client import KwaiClient, RetryLater, SendResult, classify
from tests.serving import registry_for, store_entry, write_stores
from tests.test_dispatcher import T0, Clock, accept, purchase


@pytest.mark.parametrize("status, headers, body, answer, retry_after", [
    (200, {}, b'{"result": 1}', Answer.GOOD, None),
    (200, {}, b'{"result": 10001, "error_msg": "x"}', Answer.GOOD, None),  # the event's fault, not Kwai's
    (404, {}, b"not here", Answer.GOOD, None),
    (429, {"retry-after": "7"}, b"", Answer.THROTTLED, 7.0),
    (429, {}, b"", Answer.THROTTLED, None),
    (503, {"retry-after": "7"}, b"", Answer.FAILED, None),
    (408, {}, b"", Answer.FAILED, None),
    (200, {}, b"<html>busy</html>", Answer.FAILED, None),
])
def test_what_an_answer_tells_the_pacer(status, headers, body, answer, retry_after):
    result = SendResult(classify(status, headers, body, now=T0), status, "")
    assert pace_answer(result) == (answer, retry_after)


def test_no_answer_at_all_is_a_failure():
    result = SendResult(RetryLater("ReadTimeout talking to Kwai"), None, "")  # the client's, on a timeout
    assert pace_answer(result) == (Answer.FAILED, None)


def test_a_sender_waits_at_the_gate_until_the_pause_is_over():
    clock = Clock()
    pacer = Pacer(cap=4)
    gate = Gate(pacer, clock=seconds(clock))
    sent_at = gate.enter()
    gate.leave(Answer.THROTTLED, sent_at=sent_at, retry_after=30)
    assert gate.paused()
    entered = threading.Event()
    threading.Thread(target=lambda: (gate.enter(), entered.set()), daemon=True).start()
    assert not entered.wait(0.6), "let through during the pause"
    clock.advance(30)
    assert entered.wait(30), "still waiting after the pause"
    assert not gate.paused() and pacer.in_flight == 1


def test_a_sender_at_the_limit_goes_when_an_answer_frees_a_place():
    clock = Clock()
    gate = Gate(Pacer(cap=1), clock=seconds(clock))
    first = gate.enter()
    entered = threading.Event()
    threading.Thread(target=lambda: (gate.enter(), entered.set()), daemon=True).start()
    assert not entered.wait(0.2)
    gate.leave(Answer.GOOD, sent_at=first)
    assert entered.wait(30)


@pytest.fixture
def build(database_url, tmp_path, kwai):
    def dispatcher(*, clock, cap: int, lease_seconds: float = 60, read_timeout: float = 2) -> tuple[Outbox, Dispatcher]:
        stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
        engine = make_engine(database_url)
        migrate(engine)
        outbox = Outbox(engine)
        client = KwaiClient(kwai.base_url, connect_timeout=1, read_timeout=read_timeout)
        return outbox, Dispatcher(outbox=outbox, registry=registry_for(engine, stores), client=client,
                                  concurrency=cap, lease_seconds=lease_seconds, clock=clock, rng=Random(7))
    return dispatcher


def test_retry_after_holds_every_request_until_it_has_passed(build, kwai):
    start = time.monotonic()
    outbox, dispatcher = build(clock=lambda: T0 + timedelta(seconds=time.monotonic() - start), cap=1)
    accept(outbox, purchase("1"), purchase("2"), purchase("3"))
    kwai.fail_next(1, status=429, retry_after=0.5)
    # The refused event waits for its retry (10 s); the others for the pause only.
    assert dispatcher.run(once=True) == {"pending": 1, "sent": 2}
    refused, *others = kwai.received
    assert refused.status == 429 and [r.result for r in others] == [1, 1]
    assert others[0].time - refused.time >= 0.5


def test_a_row_is_not_sent_once_its_lease_would_run_out_before_the_answer(build, kwai):
    clock = Clock()
    # 1 s to connect and 2 to read: a 2.5 s lease is gone before an answer may come.
    outbox, short = build(clock=clock, cap=4, lease_seconds=2.5)
    accept(outbox, purchase("1"))
    assert short.run(once=True) == {}
    assert kwai.received == []
    (row,) = outbox.list_events()
    assert (row.status, row.attempts) == ("sending", 0)
    clock.advance(3)  # the lease ran out: another claim takes the row, no attempt counted
    _, usual = build(clock=clock, cap=4)
    assert usual.run(once=True) == {"sent": 1}
    assert len(kwai.successes()) == 1 and outbox.list_events()[0].attempts == 1


def test_the_pacer_finds_a_slower_pace_when_kwai_fails(build, kwai):
    outbox, dispatcher = build(clock=Clock(), cap=8)
    accept(outbox, *(purchase(str(n)) for n in range(8)))
    kwai.fail_next(8, status=503)
    assert dispatcher.run(once=True) == {"pending": 8}
    assert dispatcher.pacer.limit < 8 and not dispatcher.pacer.slow_start


def test_the_cap_is_the_concurrency_setting(build):
    _, dispatcher = build(clock=Clock(), cap=3)
    assert (dispatcher.pacer.cap, dispatcher.pacer.limit, dispatcher.concurrency) == (3, 3, 3)


@pytest.mark.parametrize("idle, poll_interval, wait", [
    (1, 1.0, 0.05),  # the first empty pass: look again soon, events trickle in
    (2, 1.0, 0.1),
    (5, 1.0, 0.8),
    (6, 1.0, 1.0),  # then no more often than the poll interval
    (1000, 1.0, 1.0),
    (1, 0.01, 0.01),  # a poll interval shorter than the first wait wins
])
def test_an_idle_dispatcher_looks_again_soon_then_every_poll_interval(idle, poll_interval, wait):
    assert idle_wait(idle, poll_interval=poll_interval) == pytest.approx(wait)
