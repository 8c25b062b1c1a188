"""Alerts: the decision as a table (pure), then the sender against a loopback receiver
over a real database: each kind fires once and clears once, a storm of dead events is
one message, a failing receiver is tried a few times and never holds the check up."""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, update

from kwai_bridge.alerting import AlertSender
from kwai_bridge.alerts import BACKLOG, DEAD, HELD, QUIET, Condition, Facts, Message, Said, conditions, decide
from kwai_bridge.db import DeliveryOutcome, events, make_engine, migrate
from kwai_bridge.runtime import Runtime
from tests.alert_receiver import AlertReceiver
from tests.clock import Clock
from tests.serving import store_entry, write_stores

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# -- the decision, as tables ----------------------------------------------------------
@pytest.mark.parametrize("facts, kinds", [
    (Facts(), set()),
    (Facts(held={"a": (3, T0)}), {("a", HELD)}),
    (Facts(dead={"a": (1000, T0)}, held={"b": (1, T0)}), {("a", DEAD), ("b", HELD)}),
    (Facts(oldest_due={"a": T0 - timedelta(minutes=14)}), set()),
    (Facts(oldest_due={"a": T0 - timedelta(minutes=16)}), {("a", BACKLOG)}),
    (Facts(last_delivery={"a": {"orders/paid": T0 - 23 * HOUR}}), set()),
    (Facts(last_delivery={"a": {"orders/paid": T0 - 25 * HOUR}}), {("a", QUIET)}),
    (Facts(last_delivery={"a": {"orders/paid": T0 - 3 * HOUR}}, quiet_hours={"a": 2}), {("a", QUIET)}),
    (Facts(last_delivery={"a": {"orders/paid": T0 - 25 * HOUR}}, quiet_hours={"a": 48}), set()),
])
def test_conditions(facts, kinds):
    assert set(conditions(facts, now=T0)) == kinds


HELD_A = {("a", HELD): Condition("a", HELD, T0 - HOUR, "3 held")}


@pytest.mark.parametrize("holding, said, expected", [
    ({}, {}, []),  # nothing holds, nothing was said
    (HELD_A, {}, [("a", HELD, True)]),  # starts: told
    (HELD_A, {("a", HELD): Said(True, T0 - HOUR, T0 - 2 * HOUR)}, []),  # still on: nothing new
    ({}, {("a", HELD): Said(True, T0 - HOUR, T0 - 2 * HOUR)}, [("a", HELD, False)]),  # cleared: told
    ({}, {("a", HELD): Said(True, T0 - HOUR, T0 - timedelta(minutes=10))}, []),  # cleared within the hour: later
    (HELD_A, {("a", HELD): Said(False, T0, T0 - timedelta(minutes=10))}, []),  # back on within the hour: later
    (HELD_A, {("a", HELD): Said(False, T0, T0 - HOUR)}, [("a", HELD, True)]),  # back on after the hour
    ({}, {("a", HELD): Said(False, T0, T0 - 5 * HOUR)}, []),  # cleared and told: nothing
])
def test_decide(holding, said, expected):
    assert [(m.store, m.kind, m.firing) for m in decide(holding, said, now=T0)] == expected


def test_the_message_is_slack_compatible_json():
    body = Message("acme", HELD, True, T0, "3 event(s) held").payload()
    assert body == {"text": "kwai-bridge: store held for store acme since 2026-03-01T12:00:00Z: 3 event(s) held",
                    "alert": {"kind": "held", "store": "acme", "since": "2026-03-01T12:00:00Z",
                              "detail": "3 event(s) held", "state": "firing"}}


# -- the sender, over a database and HTTP ---------------------------------------------
@pytest.fixture
def world(tmp_path, database_url):
    migrate(make_engine(database_url))
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", quiet_hours=2),
                                                     store_entry("woocommerce", "woo")])
    runtime = Runtime.from_env({"KWAI_BRIDGE_DATABASE_URL": database_url, "KWAI_BRIDGE_STORES": str(stores),
                                "KWAI_BRIDGE_SECRET_KEYS": os.environ.get("KWAI_BRIDGE_SECRET_KEYS", "")})
    runtime.import_stores_file(now=T0)
    with AlertReceiver() as receiver:
        clock = Clock(T0)
        sender = AlertSender(runtime.engine, runtime.registry, url=receiver.url, clock=clock, retry_delays=(0, 0))
        yield runtime, sender, receiver, clock


def add_events(runtime, store: str, status: str, count: int, *, at: datetime, due: datetime | None = None,
               start: int = 0) -> None:
    rows = [dict(store_id=store, platform="shopify", business_key=f"{status}:{start + n}", event_name="EVENT_PURCHASE",
                 status=status, event="{}", attempts=0, next_attempt_at=due,
                 last_result=10006 if status == "held" else None, created_at=at, updated_at=at)
            for n in range(count)]
    with runtime.engine.begin() as conn:
        conn.execute(events.insert(), rows)


def set_status(runtime, store: str, old: str, new: str) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(update(events).where(events.c.store_id == store, events.c.status == old).values(status=new))


def deliver(runtime, topic: str, at: datetime) -> None:
    runtime.outbox.accept(store_id="acme", platform="shopify", topic=topic, delivery_key=f"{topic}@{at.isoformat()}",
                          received_at=at, body=b"", headers={}, conversions=(), outcome=DeliveryOutcome.IGNORED)


def fires_and_clears(sender, receiver, clock, kind: str, start, end) -> None:
    start()
    sender.check()
    assert receiver.take() == [(kind, "acme", "firing")]
    sender.check()
    clock.advance(timedelta(minutes=5))
    sender.check()
    assert receiver.take() == [], "told once as it starts"
    end()
    sender.check()
    assert receiver.take() == [], "not again within the hour"
    clock.advance(HOUR)
    sender.check()
    assert receiver.take() == [(kind, "acme", "cleared")]
    clock.advance(HOUR)
    sender.check()
    assert receiver.take() == [], "told once as it clears"


def test_a_held_store_fires_once_and_clears_once(world):
    runtime, sender, receiver, clock = world
    fires_and_clears(sender, receiver, clock, HELD, lambda: add_events(runtime, "acme", "held", 3, at=clock()),
                     lambda: set_status(runtime, "acme", "held", "pending"))


def test_dead_events_fire_once_and_clear_once(world):
    runtime, sender, receiver, clock = world
    fires_and_clears(sender, receiver, clock, DEAD, lambda: add_events(runtime, "acme", "dead", 2, at=clock()),
                     lambda: set_status(runtime, "acme", "dead", "sent"))


def test_a_backlog_fires_once_and_clears_once(world):
    runtime, sender, receiver, clock = world
    fires_and_clears(sender, receiver, clock, BACKLOG,
                     lambda: add_events(runtime, "acme", "pending", 5, at=clock(), due=clock() - timedelta(minutes=20)),
                     lambda: set_status(runtime, "acme", "pending", "sent"))


def test_quiet_topics_fire_once_and_clear_once(world):
    runtime, sender, receiver, clock = world
    fires_and_clears(sender, receiver, clock, QUIET, lambda: deliver(runtime, "orders/paid", clock() - 3 * HOUR),
                     lambda: deliver(runtime, "orders/paid", clock()))


def test_a_storm_of_a_thousand_dead_events_is_one_message(world):
    runtime, sender, receiver, clock = world
    for batch in range(10):
        add_events(runtime, "acme", "dead", 100, at=clock(), start=100 * batch)
        sender.check()
        clock.advance(timedelta(minutes=10))
    assert receiver.take() == [(DEAD, "acme", "firing")]
    assert receiver.tries == 1


def test_a_store_of_its_own_url_gets_its_alerts_there_too(tmp_path, sqlite_url):
    with AlertReceiver() as own, AlertReceiver() as shared:
        stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", alert_webhook_url=own.url),
                                                         store_entry("woocommerce", "woo")])
        runtime = Runtime.from_env({"KWAI_BRIDGE_DATABASE_URL": sqlite_url, "KWAI_BRIDGE_STORES": str(stores)})
        runtime.import_stores_file(now=T0)
        add_events(runtime, "acme", "dead", 1, at=T0)
        add_events(runtime, "woo", "dead", 1, at=T0)
        AlertSender(runtime.engine, runtime.registry, url=shared.url, clock=lambda: T0).check()
        assert own.take() == [(DEAD, "acme", "firing")]
        assert sorted(shared.take()) == [(DEAD, "acme", "firing"), (DEAD, "woo", "firing")]


def test_a_failing_receiver_is_tried_a_few_times_then_logged(world, caplog):
    runtime, sender, receiver, clock = world
    receiver.status = 500
    add_events(runtime, "acme", "dead", 1, at=clock())
    with caplog.at_level(logging.WARNING, logger="kwai_bridge.alerting"):
        sent = sender.check()
    assert [m.kind for m in sent] == [DEAD]
    assert receiver.tries == 3  # the first try and two more
    assert any("dropped after 3 tries" in r.getMessage() for r in caplog.records)
    assert receiver.url not in caplog.text
    receiver.status = 200
    clock.advance(timedelta(minutes=5))
    sender.check()
    assert receiver.tries == 3, "a dropped message is not sent again"


def test_two_senders_tell_a_condition_once(world):
    runtime, sender, receiver, clock = world
    other = AlertSender(runtime.engine, runtime.registry, url=receiver.url, clock=clock, retry_delays=())
    add_events(runtime, "acme", "held", 1, at=clock())
    sender.check()
    other.check()
    assert receiver.take() == [(HELD, "acme", "firing")]
