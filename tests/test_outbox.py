"""kwai_bridge.outbox on both backends: atomic accept, dedup, statuses, leases, replay, pruning."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from adapters.values import Conversion
from kwai_bridge import db, outbox as outbox_module
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox, UnknownDelivery
from kwai_bridge.kwai.events import Content, KwaiEvent

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
LEASE = 60


def conv(key: str, *, click: str | None = "clk-1", skip: str | None = None,
         high_water: tuple[str, int] | None = None, name: str = "EVENT_PURCHASE",
         **event_fields) -> Conversion:
    event = KwaiEvent(
        event_name=name, event_time=T0, third_party="shopify", idempotency_key=key,
        click_id=click, value=Decimal("19.90"), currency="USD",
        contents=(Content(id="p1", quantity=2, price=Decimal("9.95")),), **event_fields)
    return Conversion(event=event, click_source="attribute" if click else None, skip_reason=skip,
                      identifiers={"order_id": key}, high_water=high_water)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def box(engine):
    return Outbox(engine)


def accept(box: Outbox, delivery_key: str, conversions, *, store_id="store-a",
           received_at=T0, outcome="queued", body=b'{"id": 1}', headers=None):
    return box.accept(
        store_id=store_id, platform="shopify", topic="orders/paid", delivery_key=delivery_key,
        received_at=received_at, body=body,
        headers=headers or {"X-Shopify-Topic": "orders/paid"},
        conversions=conversions, outcome=outcome)


def table_count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def status_of(box: Outbox, event_id: int) -> str:
    return box.get_event(event_id).status


# -- accept ----------------------------------------------------------------------------
def test_accept_stores_the_delivery_and_its_events(box):
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJl",
               "X-Shopify-Webhook-Id": "w-1", "Authorization": "Bearer x"}
    result = accept(box, "w-1", [conv("order:1:EVENT_PURCHASE"), conv("order:1:EVENT_PLACE_ORDER",
                                                                       name="EVENT_PLACE_ORDER")],
                    headers=headers)
    assert result.duplicate is False and result.created == 2
    delivery = box.get_delivery(result.delivery_id)
    assert (delivery.store_id, delivery.delivery_key, delivery.outcome) == ("store-a", "w-1", "queued")
    assert delivery.body == b'{"id": 1}' and delivery.received_at == T0
    assert delivery.headers == {"x-shopify-topic": "orders/paid", "x-shopify-webhook-id": "w-1"}
    rows = box.list_events()
    assert {r.business_key for r in rows} == {"order:1:EVENT_PURCHASE", "order:1:EVENT_PLACE_ORDER"}
    purchase = next(r for r in rows if r.event_name == "EVENT_PURCHASE")
    assert purchase.event == conv("order:1:EVENT_PURCHASE").event
    assert purchase.identifiers == {"order_id": "order:1:EVENT_PURCHASE"}
    assert (purchase.delivery_id, purchase.attempts, purchase.created_at) == (result.delivery_id, 0, T0)


def test_accept_is_all_or_nothing(box, engine):
    unserialisable = conv("order:1:EVENT_PLACE_ORDER", name="EVENT_PLACE_ORDER", content_name=object())
    with pytest.raises(TypeError):
        accept(box, "w-1", [conv("cart:t:EVENT_ADD_TO_CART:1", high_water=("t", 1)), unserialisable])
    for table in (db.deliveries, db.events, db.high_water):
        assert table_count(engine, table) == 0
    # and the same delivery is accepted afterwards, not taken for a duplicate
    assert accept(box, "w-1", [conv("order:1:EVENT_PURCHASE")]).created == 1


def test_a_delivery_seen_before_writes_nothing(box, engine):
    first = accept(box, "w-1", [conv("order:1:EVENT_PURCHASE")])
    again = accept(box, "w-1", [conv("order:2:EVENT_PURCHASE")], outcome="failed")
    assert (again.delivery_id, again.duplicate, again.created) == (None, True, 0)
    assert table_count(engine, db.deliveries) == 1 and table_count(engine, db.events) == 1
    assert box.get_delivery(first.delivery_id).outcome == "queued"
    # the same delivery key in another store is another delivery
    assert accept(box, "w-1", [conv("order:1:EVENT_PURCHASE")], store_id="store-b").created == 1


def test_one_business_key_from_two_deliveries_gives_one_event(box):
    first = accept(box, "w-1", [conv("order:1:EVENT_PURCHASE")])
    second = accept(box, "w-2", [conv("order:1:EVENT_PURCHASE", click="clk-2")])
    assert (first.created, second.duplicate, second.created) == (1, False, 0)
    (row,) = box.list_events()
    assert row.event.click_id == "clk-1" and row.delivery_id == first.delivery_id


@pytest.mark.parametrize(
    "click, skip, status, due",
    [
        ("clk-1", None, "pending", T0),
        (None, None, "unattributed", None),
        ("clk-1", "test order", "skipped", None),
        (None, "refunded", "skipped", None),
    ],
)
def test_status_of_a_new_event(box, click, skip, status, due):
    accept(box, "w-1", [conv("order:1:EVENT_PURCHASE", click=click, skip=skip)])
    (row,) = box.list_events()
    assert (row.status, row.next_attempt_at, row.skip_reason) == (status, due, skip)


def test_cart_events_only_when_the_count_passes_the_high_water_mark(box):
    created = []
    for n, count in enumerate([1, 3, 2, 3, 4]):
        c = conv(f"cart:t:EVENT_ADD_TO_CART:{count}", name="EVENT_ADD_TO_CART", high_water=("t", count))
        created.append(accept(box, f"w-{n}", [c]).created)
    assert created == [1, 1, 0, 0, 1]
    keys = sorted(r.business_key for r in box.list_events())
    assert keys == ["cart:t:EVENT_ADD_TO_CART:1", "cart:t:EVENT_ADD_TO_CART:3", "cart:t:EVENT_ADD_TO_CART:4"]
    # another store's cart with the same key has its own mark
    c = conv("cart:t:EVENT_ADD_TO_CART:2", name="EVENT_ADD_TO_CART", high_water=("t", 2))
    assert accept(box, "w-x", [c], store_id="store-b").created == 1


@pytest.mark.parametrize("outcome", ["queued", "ignored", "failed", "privacy"])
def test_known_outcomes_are_stored(box, outcome):
    result = accept(box, "w-1", [], outcome=outcome)
    assert box.get_delivery(result.delivery_id).outcome == outcome


@pytest.mark.parametrize("outcome", ["duplicate", "sent", ""])
def test_an_unknown_outcome_is_refused(box, engine, outcome):
    with pytest.raises(ValueError, match="outcome"):
        accept(box, "w-1", [], outcome=outcome)
    assert table_count(engine, db.deliveries) == 0


# -- reprocessing ------------------------------------------------------------------------
def test_failed_deliveries_can_be_reprocessed(box):
    failed = accept(box, "w-1", [], outcome="failed")
    accept(box, "w-2", [], outcome="queued")
    accept(box, "w-0", [], outcome="failed", received_at=T0 - timedelta(days=2))
    (row,) = box.deliveries_for_reprocess(since=T0 - timedelta(days=1))
    assert row.id == failed.delivery_id and row.body == b'{"id": 1}'
    assert box.deliveries_for_reprocess(since=T0 - timedelta(days=1), store_id="store-b") == []
    now = T0 + timedelta(hours=1)
    created = box.add_conversions(failed.delivery_id, store_id="store-a", platform="shopify",
                                  conversions=[conv("order:1:EVENT_PURCHASE")], outcome="reprocessed", now=now)
    assert created == 1
    assert box.get_delivery(failed.delivery_id).outcome == "reprocessed"
    (event,) = box.list_events()
    assert (event.delivery_id, event.next_attempt_at, event.status) == (failed.delivery_id, now, "pending")
    assert [d.id for d in box.deliveries_for_reprocess(since=T0 - timedelta(days=1))] == []
    with pytest.raises(UnknownDelivery):
        box.add_conversions(9999, store_id="store-a", platform="shopify", conversions=[],
                            outcome="reprocessed", now=now)


# -- claims and leases ------------------------------------------------------------------
def _queue(box, n, *, store_id="store-a", start=T0):
    for i in range(n):
        accept(box, f"{store_id}-w-{i}", [conv(f"order:{i}:EVENT_PURCHASE")], store_id=store_id,
               received_at=start + timedelta(seconds=i))
    return sorted(r.id for r in box.list_events(store_id=store_id))


def test_claims_take_the_oldest_due_rows_under_a_lease(box, caplog):
    ids = _queue(box, 4)
    now = T0 + timedelta(seconds=2)  # rows 0, 1 and 2 are due
    first = box.claim_due(now=now, limit=2, lease_seconds=LEASE, owner="w1")
    assert [r.id for r in first] == ids[:2]
    assert {(r.status, r.lease_until, r.lease_owner) for r in first} == {
        ("sending", now + timedelta(seconds=LEASE), "w1")}
    assert [r.id for r in box.claim_due(now=now, limit=5, lease_seconds=LEASE, owner="w2")] == [ids[2]]
    held = now + timedelta(seconds=LEASE - 1)  # row 3 fell due; the leases still hold
    assert [r.id for r in box.claim_due(now=held, limit=5, lease_seconds=LEASE, owner="w2")] == [ids[3]]
    assert box.due_count(held) == 0
    # the leases of w1 and w2 run out: their rows come back, oldest lease first
    later = now + timedelta(seconds=2 * LEASE)
    with caplog.at_level(logging.WARNING, logger="kwai_bridge.outbox"):
        again = box.claim_due(now=later, limit=10, lease_seconds=LEASE, owner="w3")
    assert [r.id for r in again] == ids
    assert {r.lease_owner for r in again} == {"w3"}
    assert "recovered 4 events whose lease had expired" in caplog.text


def test_next_due_and_counts(box):
    assert box.next_due_at() is None
    ids = _queue(box, 3)
    assert box.next_due_at() == T0
    assert box.due_count(T0 + timedelta(seconds=1)) == 2
    box.claim_due(now=T0 + timedelta(seconds=10), limit=3, lease_seconds=LEASE)
    assert box.next_due_at() == T0 + timedelta(seconds=10 + LEASE)
    assert box.counts()["sending"] == 3 and box.counts()["pending"] == 0
    assert set(box.counts()) == set(db.EVENT_STATUSES)
    assert box.counts(store_id="store-b")["sending"] == 0
    assert [r.id for r in box.list_events(limit=2)] == ids[::-1][:2]
    assert [r.id for r in box.list_events(limit=2, offset=2)] == ids[:1]
    assert box.list_events(status="pending") == []
    assert box.get_event(123456) is None


def test_a_lease_can_be_extended_by_its_owner_only(box):
    _queue(box, 1)
    (row,) = box.claim_due(now=T0, limit=1, lease_seconds=LEASE, owner="w1")
    assert box.extend_lease([row.id], now=T0 + timedelta(seconds=50), lease_seconds=LEASE, owner="w2") == 0
    assert box.extend_lease([row.id], now=T0 + timedelta(seconds=50), lease_seconds=LEASE, owner="w1") == 1
    assert box.claim_due(now=T0 + timedelta(seconds=LEASE + 1), limit=1, lease_seconds=LEASE) == []
    assert box.get_event(row.id).lease_until == T0 + timedelta(seconds=50 + LEASE)


LATER = T0 + timedelta(minutes=5)
MARKS = {
    "sent": lambda box, i, **kw: box.mark_sent(i, now=LATER, response="ok", **kw),
    "retry": lambda box, i, **kw: box.mark_retry(i, now=LATER, next_attempt_at=LATER + timedelta(minutes=1),
                                                 error="503", response="busy", result=None, **kw),
    "dead": lambda box, i, **kw: box.mark_dead(i, now=LATER, error="bad pixel", response="x" * 5000,
                                               result=4001, **kw),
    "held": lambda box, i, **kw: box.mark_held(i, now=LATER, error="token", response="no", result=4003, **kw),
}
MARKED = {"sent": "sent", "retry": "pending", "dead": "dead", "held": "held"}


@pytest.mark.parametrize("mark", sorted(MARKS))
def test_marks_apply_only_while_the_row_is_leased_to_us(box, mark):
    (event_id,) = _queue(box, 1)
    assert MARKS[mark](box, event_id) is False  # pending, not claimed
    box.claim_due(now=T0, limit=1, lease_seconds=LEASE, owner="w1")
    assert MARKS[mark](box, event_id, owner="w2") is False
    assert status_of(box, event_id) == "sending"
    assert MARKS[mark](box, event_id, owner="w1") is True
    assert MARKS[mark](box, event_id, owner="w1") is False
    row = box.get_event(event_id)
    assert (row.status, row.attempts, row.lease_until, row.updated_at) == (MARKED[mark], 1, None, LATER)
    assert row.sent_at == (LATER if mark == "sent" else None)
    assert len(row.last_response) <= outbox_module.RESPONSE_LIMIT


def test_a_retried_row_is_claimed_again_when_due(box):
    (event_id,) = _queue(box, 1)
    box.claim_due(now=T0, limit=1, lease_seconds=LEASE)
    assert MARKS["retry"](box, event_id)
    assert box.claim_due(now=LATER, limit=1, lease_seconds=LEASE) == []
    (row,) = box.claim_due(now=LATER + timedelta(minutes=1), limit=1, lease_seconds=LEASE)
    assert (row.id, row.attempts, row.last_error) == (event_id, 1, "503")


def test_hold_store_parks_only_that_stores_pending_rows(box):
    a = _queue(box, 3, store_id="store-a")
    b = _queue(box, 2, store_id="store-b")
    box.claim_due(now=T0, limit=1, lease_seconds=LEASE)  # a[0] is in flight
    assert box.hold_store("store-a", now=LATER, error="token revoked") == 2
    assert [status_of(box, i) for i in a] == ["sending", "held", "held"]
    assert [status_of(box, i) for i in b] == ["pending", "pending"]
    assert box.get_event(a[1]).last_error == "token revoked"


def test_replay_moves_dead_and_held_rows_back_and_never_sent_ones(box):
    a = _queue(box, 3, store_id="store-a")
    b = _queue(box, 1, store_id="store-b")
    box.claim_due(now=T0 + timedelta(hours=1), limit=100, lease_seconds=LEASE)
    MARKS["dead"](box, a[0])
    MARKS["held"](box, a[1])
    MARKS["sent"](box, a[2])
    MARKS["dead"](box, b[0])
    now = T0 + timedelta(days=1)
    assert box.replay(now=now, store_id="store-a", result=4003) == 1
    assert status_of(box, a[1]) == "pending" and status_of(box, a[0]) == "dead"
    assert box.replay(now=now, event_id=a[2]) == 0
    assert box.replay(now=now) == 2
    row = box.get_event(a[0])
    assert (row.status, row.attempts, row.next_attempt_at, row.last_error) == ("pending", 0, now, "bad pixel")
    assert status_of(box, a[2]) == "sent"
    assert {r.id for r in box.claim_due(now=now, limit=10, lease_seconds=LEASE)} == {a[0], a[1], b[0]}


# -- attribution -------------------------------------------------------------------------
def test_attach_click_queues_unattributed_events(box):
    accept(box, "w-1", [conv("order:1:EVENT_PURCHASE", click=None),
                        conv("order:1:EVENT_PLACE_ORDER", click=None, name="EVENT_PLACE_ORDER")])
    accept(box, "w-2", [conv("order:2:EVENT_PURCHASE", click=None)], received_at=T0 + timedelta(hours=2))
    accept(box, "w-3", [conv("order:3:EVENT_PURCHASE", click=None)], store_id="store-b")
    waiting = box.unattributed_since("store-a", since=T0)
    assert len(waiting) == 3
    assert [r.business_key for r in box.unattributed_since("store-a", since=T0 + timedelta(hours=1))] == [
        "order:2:EVENT_PURCHASE"]
    other = box.list_events(store_id="store-b")[0].id
    ids = [r.id for r in waiting if r.business_key.startswith("order:1:")]
    now = T0 + timedelta(hours=3)
    assert box.attach_click("store-a", event_ids=ids + [other], click_id="clk-9", source="landing_url", now=now) == 2
    for event_id in ids:
        row = box.get_event(event_id)
        assert (row.status, row.event.click_id, row.click_source, row.next_attempt_at) == (
            "pending", "clk-9", "landing_url", now)
    assert status_of(box, other) == "unattributed"
    assert box.attach_click("store-a", event_ids=ids, click_id="clk-10", source="x", now=now) == 0
    assert box.get_event(ids[0]).event.click_id == "clk-9"


# -- pruning -------------------------------------------------------------------------------
def test_prune_drops_old_bodies_sent_events_and_unneeded_deliveries(box, engine, monkeypatch):
    monkeypatch.setattr(outbox_module, "PRUNE_BATCH", 2)  # several short batches
    old = T0 - timedelta(days=40)
    for i in range(3):  # old, sent long ago: everything goes
        accept(box, f"old-sent-{i}", [conv(f"order:s{i}:EVENT_PURCHASE")], received_at=old)
    for event in box.claim_due(now=old, limit=10, lease_seconds=LEASE):
        box.mark_sent(event.id, now=old, response="ok")
    kept = accept(box, "old-dead", [conv("order:d:EVENT_PURCHASE")], received_at=old)  # unsent: kept
    box.claim_due(now=old, limit=10, lease_seconds=LEASE)
    box.mark_dead(box.list_events(status="sending")[0].id, now=old, error="e", response="r")
    accept(box, "old-skip", [conv("order:k:EVENT_PURCHASE", skip="test")], received_at=old)
    week = accept(box, "week", [conv("order:w:EVENT_PURCHASE", click=None)], received_at=T0 - timedelta(days=8))
    fresh = accept(box, "fresh", [], received_at=T0 - timedelta(days=1))

    result = box.prune(now=T0, body_days=7, sent_days=30)

    assert result == {"bodies": 6, "events": 4, "deliveries": 4}
    assert table_count(engine, db.deliveries) == 3
    assert box.get_delivery(kept.delivery_id).body is None
    assert box.get_delivery(week.delivery_id).body is None
    assert box.get_delivery(fresh.delivery_id).body == b'{"id": 1}'
    assert sorted(r.business_key for r in box.list_events()) == ["order:d:EVENT_PURCHASE", "order:w:EVENT_PURCHASE"]
    assert box.prune(now=T0) == {"bodies": 0, "events": 0, "deliveries": 0}


def test_ping(box):
    box.ping()


# -- concurrency ---------------------------------------------------------------------------
@pytest.mark.parametrize("engines", ["shared", "separate"])
def test_two_claimers_never_get_the_same_row(database_url, box, engines):
    accept(box, "w-bulk", [conv(f"order:{i}:EVENT_PURCHASE") for i in range(500)])
    if engines == "shared":
        boxes = [box, box]
    else:
        boxes = [Outbox(make_engine(database_url)) for _ in range(2)]
    claimed: list[list[int]] = [[], []]
    errors = []
    barrier = threading.Barrier(2)

    def claimer(n):
        barrier.wait()
        try:
            while rows := boxes[n].claim_due(now=T0, limit=7, lease_seconds=LEASE, owner=f"w{n}"):
                claimed[n].extend(r.id for r in rows)
                time.sleep(0.001)  # a dispatcher sends between claims; SQLite's lock is not fair
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 500
    if box.engine.dialect.name == "postgresql":
        # SQLite's busy handler is not fair (a waiter backs off while the other writer
        # takes the lock again), so only PostgreSQL promises that both got some rows.
        assert claimed[0] and claimed[1], "both claimers should have taken some rows"
    assert box.counts()["sending"] == 500
    if engines == "separate":
        for b in boxes:
            b.engine.dispose()
