"""The dispatcher over loopback: a real outbox (SQLite and PostgreSQL), the real Kwai
client, and the fake Kwai server checking every request. Time is injected."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from random import Random

import pytest

from adapters.values import Conversion
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox
from kwai_bridge.retry import RETRY_SCHEDULE
from kwai_bridge.worker import RECHECK_SECONDS, Dispatcher
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.kwai.events import Content, KwaiEvent
from tests.clock import Clock
from tests.serving import registry_for, reimport, store_entry, write_stores

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


def purchase(order_id: str, *, click_id: str | None = "CLICK.abc+/=", value: str = "10.28") -> Conversion:
    event = KwaiEvent(
        event_name="EVENT_PURCHASE", event_time=T0 - timedelta(minutes=5), third_party="shopify",
        idempotency_key=f"order:{order_id}:EVENT_PURCHASE", click_id=click_id,
        value=Decimal(value), currency="BRL",
        contents=(Content(id="p1", quantity=2, price=Decimal("5.14")),), content_type="product",
        content_id="p1", quantity=2,
    )
    return Conversion(event=event, click_source="attribute" if click_id else None)


@pytest.fixture
def setup(database_url, tmp_path, kwai):
    def build(**store_overrides):
        stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", **store_overrides)])
        engine = make_engine(database_url)
        migrate(engine)
        registry = registry_for(engine, stores)
        outbox = Outbox(engine)
        clock = Clock()
        client = KwaiClient(kwai.base_url, read_timeout=2)
        dispatcher = Dispatcher(outbox=outbox, registry=registry, client=client, concurrency=4,
                                lease_seconds=60, clock=clock, rng=Random(7))
        return outbox, dispatcher, clock, registry, stores
    return build


def accept(outbox: Outbox, *conversions: Conversion, key: str = "d1") -> None:
    outbox.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key=key,
                  received_at=T0, body=b"{}", headers={}, conversions=list(conversions))


def test_delivered_event_reaches_kwai_exactly_as_the_wire_says(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    assert dispatcher.run(once=True) == {"sent": 1}
    (request,) = kwai.successes()
    body = request.fields
    assert body["clickid"] == "CLICK.abc+/="
    assert body["event_name"] == "EVENT_PURCHASE"
    assert body["pixelId"] == "pixel-shopify" and body["access_token"] == "token-shopify"
    assert body["value"] == "10.28" and body["currency"] == "BRL"
    assert body["trackFlag"] is False and body["third_party"] == "shopify"
    properties = json.loads(body["properties"])
    assert properties["event_timestamp"] == int((T0 - timedelta(minutes=5)).timestamp() * 1000)
    assert [row.status for row in outbox.list_events()] == ["sent"]


def test_test_mode_store_sends_track_flag_true_by_get(setup, kwai):
    outbox, dispatcher, *_ = setup(test_mode=True, send_method="get")
    accept(outbox, purchase("1"))
    dispatcher.run(once=True)
    (request,) = kwai.successes()
    assert request.method == "GET"
    assert request.fields["trackFlag"] == "true"


def test_unattributed_event_is_never_sent(setup, kwai):
    outbox, dispatcher, *_ = setup()
    accept(outbox, purchase("1", click_id=None))
    assert dispatcher.run(once=True) == {}
    assert kwai.received == []
    assert outbox.list_events()[0].status == "unattributed"


@pytest.mark.parametrize("code", [10001, 10002, 10005, 10007])
def test_rejected_event_is_dead_with_the_code_and_not_retried(setup, kwai, code):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    kwai.fail_next(1, result_code=code)
    assert dispatcher.run(once=True) == {"dead": 1}
    row = outbox.list_events()[0]
    assert (row.status, row.last_result, row.attempts) == ("dead", code, 1)
    clock.advance(10 * 86400)
    assert dispatcher.run(once=True) == {}
    assert len(kwai.received) == 1


def test_server_errors_follow_the_retry_schedule_then_dead(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    kwai.fail_next(len(RETRY_SCHEDULE) + 1, status=503)
    for attempt, wait in enumerate(RETRY_SCHEDULE, start=1):
        assert dispatcher.run(once=True) == {"pending": 1}
        row = outbox.list_events()[0]
        assert row.attempts == attempt
        delay = (row.next_attempt_at - clock.now).total_seconds()
        assert wait * 0.8 <= delay <= wait * 1.2, (attempt, delay)
        clock.advance(delay - 1)
        assert dispatcher.run(once=True) == {}, "sent before its time"
        clock.advance(1)
    assert dispatcher.run(once=True) == {"dead": 1}
    assert len(kwai.received) == len(RETRY_SCHEDULE) + 1


def test_retry_after_longer_than_the_schedule_wins(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    kwai.fail_next(1, status=429, retry_after=600)
    dispatcher.run(once=True)
    row = outbox.list_events()[0]
    assert (row.next_attempt_at - clock.now).total_seconds() >= 600
    clock.advance(600)
    assert dispatcher.run(once=True) == {"sent": 1}


@pytest.mark.parametrize("retry_after", ["1e20", "1000000000", "-5", "Thu, 01 Jan 2099 00:00:00 GMT"])
def test_absurd_retry_after_neither_stalls_nor_loses_the_other_outcomes(setup, kwai, retry_after):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"), purchase("2"), purchase("3"))
    kwai.fail_next(1, status=429, body=b"{}", retry_after=retry_after)
    # The three outcomes are recorded in one transaction: one that cannot be computed
    # would leave the two delivered events leased, to be sent again.
    assert dispatcher.run(once=True) == {"sent": 2, "pending": 1}
    (waiting,) = outbox.list_events(status="pending")
    assert 0 <= (waiting.next_attempt_at - clock.now).total_seconds() <= 86400
    clock.advance(86400)
    assert dispatcher.run(once=True) == {"sent": 1}
    assert len(kwai.successes()) == 3


class BrokenRng(Random):
    """A random source that fails when drawn from: any fault while one outcome is decided."""

    def uniform(self, a: float, b: float) -> float:
        raise ValueError("no randomness today")


def test_one_outcome_that_cannot_be_decided_does_not_drop_the_others_of_its_batch(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    dispatcher.rng = BrokenRng()
    accept(outbox, purchase("1"), purchase("2"), purchase("3"))
    kwai.fail_next(1, status=503)  # its retry time needs the broken random source
    # The three outcomes are recorded in one transaction: the two Kwai accepted are
    # recorded, and the third comes back when its lease runs out.
    assert dispatcher.run(once=True) == {"sent": 2, "error": 1}
    assert sorted(row.status for row in outbox.list_events()) == ["sending", "sent", "sent"]
    dispatcher.rng = Random(7)
    clock.advance(dispatcher.lease_seconds + 1)
    assert dispatcher.run(once=True) == {"sent": 1}
    assert len(kwai.successes()) == 3


def test_token_refused_holds_the_store_until_fixed_and_replayed(setup, kwai, tmp_path, caplog):
    outbox, dispatcher, clock, registry, stores = setup()
    kwai.accepted_tokens = {"good-token"}
    accept(outbox, purchase("1"), purchase("2"), purchase("3"))
    with caplog.at_level("ERROR"):
        tally = dispatcher.run(once=True)
    assert tally.get("held") == 3 and "sent" not in tally
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "token-shopify" not in errors[0].getMessage()
    refused = len(kwai.received)
    assert 1 <= refused <= dispatcher.concurrency  # only the requests already in flight
    # New events of a held store are held without burning a request.
    accept(outbox, purchase("4"), key="d2")
    dispatcher.run(once=True)
    assert len(kwai.received) == refused
    assert {r.status for r in outbox.list_events()} == {"held"}
    # The operator fixes the token, reloads, replays.
    write_stores(stores, [store_entry("shopify", "acme", access_token="good-token")])
    assert reimport(registry, stores)
    assert outbox.replay(now=clock.now, store_id="acme", result=10006) == 4
    assert dispatcher.run(once=True) == {"sent": 4}
    assert {r.status for r in outbox.list_events()} == {"sent"}


@pytest.mark.parametrize("status", [403, 401, 400])
def test_a_refused_token_answered_with_an_error_status_holds_the_store_for_replay(setup, kwai, status, caplog):
    outbox, dispatcher, clock, registry, stores = setup()
    accept(outbox, purchase("1"))
    kwai.fail_next(1, status=status, result_code=10006)
    with caplog.at_level("ERROR"):
        assert dispatcher.run(once=True) == {"held": 1}
    assert "refused the access token" in caplog.text
    (row,) = outbox.list_events()
    assert (row.status, row.last_result) == ("held", 10006)
    # What the README tells the operator to do: fix the token, then replay.
    write_stores(stores, [store_entry("shopify", "acme", access_token="good-token")])
    assert reimport(registry, stores)
    assert outbox.replay(now=clock.now, store_id="acme", result=10006) == 1
    assert dispatcher.run(once=True) == {"sent": 1}


def test_dead_event_replayed_is_sent_once(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    kwai.fail_next(1, status=400)
    assert dispatcher.run(once=True) == {"dead": 1}
    event_id = outbox.list_events()[0].id
    assert outbox.replay(now=clock.now, event_id=event_id) == 1
    assert dispatcher.run(once=True) == {"sent": 1}
    assert outbox.replay(now=clock.now, event_id=event_id) == 0, "a sent event is never replayed"
    assert len(kwai.successes()) == 1


def test_slow_kwai_counts_as_retry_later(setup, kwai):
    outbox, dispatcher, *_ = setup()
    accept(outbox, purchase("1"))
    kwai.latency = 3.0  # longer than the client's 2 s read timeout
    assert dispatcher.run(once=True) == {"pending": 1}
    assert "Timeout" in outbox.list_events()[0].last_error


def test_expired_lease_returns_the_event(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    claimed = outbox.claim_for_sending(now=clock.now, limit=10, lease_seconds=60, owner="crashed")
    assert len(claimed) == 1
    assert dispatcher.run(once=True) == {}, "leased by another worker"
    clock.advance(61)
    assert dispatcher.run(once=True) == {"sent": 1}


def test_a_running_dispatcher_looks_for_expired_leases_once_per_recheck_interval(setup, kwai):
    outbox, dispatcher, clock, *_ = setup()
    accept(outbox, purchase("1"))
    assert dispatcher.run(once=True) == {"sent": 1}  # the first pass always looks
    accept(outbox, purchase("2"), key="d2")
    assert len(outbox.claim_for_sending(now=clock.now, limit=10, lease_seconds=0.5, owner="crashed")) == 1
    clock.advance(RECHECK_SECONDS / 2 + 0.01)  # the lease has run out, the interval has not
    assert dispatcher.run(once=True) == {}
    clock.advance(RECHECK_SECONDS / 2)
    assert dispatcher.run(once=True) == {"sent": 1}
    assert [r.fields["clickid"] for r in kwai.successes()] == ["CLICK.abc+/="] * 2


def test_a_hold_is_kept_by_a_second_dispatcher_and_after_a_restart(setup, kwai):
    outbox, dispatcher, clock, registry, stores = setup()
    kwai.accepted_tokens = {"good-token"}
    accept(outbox, purchase("1"))
    assert dispatcher.run(once=True) == {"held": 1}
    refused = len(kwai.received)
    accept(outbox, purchase("2"), key="d2")
    # A dispatcher that did not see the 10006 itself (another process, or this one
    # restarted) reads the hold from the held rows and spends no request.
    fresh = Dispatcher(outbox=outbox, registry=registry, client=dispatcher.client, concurrency=4,
                       lease_seconds=60, clock=clock, rng=Random(3), owner="second")
    assert fresh.run(once=True) == {"held": 1}
    assert len(kwai.received) == refused
    write_stores(stores, [store_entry("shopify", "acme", access_token="good-token")])
    assert reimport(registry, stores)
    assert outbox.replay(now=clock.now, store_id="acme", result=10006) == 2
    assert fresh.run(once=True) == {"sent": 2}
