"""kwai_bridge.outbox on both backends: atomic accept, dedup, statuses, reprocessing,
reading, attribution's queries and pruning (the dispatcher's queries: test_leases)."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from adapters.values import Conversion
from kwai_bridge import db, outbox as outbox_module
from kwai_bridge.db import EventStatus
from kwai_bridge.outbox import Finish, UnknownDelivery
from tests.outbox_helpers import (  # noqa: F401  (engine and box are fixtures)
    T0, accept, box, claim, conv, engine, event_of, queue, status_of,
)


def table_count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def delivery_of(engine, delivery_id: int) -> dict:
    """The stored row, headers parsed."""
    with engine.connect() as conn:
        row = dict(conn.execute(select(db.deliveries).where(db.deliveries.c.id == delivery_id)).mappings().one())
    row["headers"] = json.loads(row["headers"]) if row["headers"] else None
    return row


# -- accept ----------------------------------------------------------------------------
def test_accept_stores_the_delivery_and_its_events(box, engine):
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": "c2lnbmF0dXJl",
               "X-Shopify-Webhook-Id": "w-1", "Authorization": "Bearer x"}
    result = accept(box, "w-1", [conv("order:1:EVENT_PURCHASE"), conv("order:1:EVENT_PLACE_ORDER",
                                                                       name="EVENT_PLACE_ORDER")],
                    headers=headers)
    assert result.duplicate is False and result.created == 2
    delivery = delivery_of(engine, result.delivery_id)
    assert (delivery["store_id"], delivery["delivery_key"], delivery["outcome"]) == ("store-a", "w-1", "queued")
    assert delivery["body"] == b'{"id": 1}' and delivery["received_at"] == T0
    assert delivery["headers"] == {"x-shopify-topic": "orders/paid", "x-shopify-webhook-id": "w-1"}
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
    assert delivery_of(engine, first.delivery_id)["outcome"] == "queued"
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
def test_known_outcomes_are_stored(box, engine, outcome):
    result = accept(box, "w-1", [], outcome=outcome)
    assert delivery_of(engine, result.delivery_id)["outcome"] == outcome


@pytest.mark.parametrize("outcome", ["duplicate", "sent", ""])
def test_an_unknown_outcome_is_refused(box, engine, outcome):
    with pytest.raises(ValueError, match="outcome"):
        accept(box, "w-1", [], outcome=outcome)
    assert table_count(engine, db.deliveries) == 0


# -- reprocessing ------------------------------------------------------------------------
def test_failed_deliveries_can_be_reprocessed(box, engine):
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
    assert delivery_of(engine, failed.delivery_id)["outcome"] == "reprocessed"
    (event,) = box.list_events()
    assert (event.delivery_id, event.next_attempt_at, event.status) == (failed.delivery_id, now, "pending")
    assert [d.id for d in box.deliveries_for_reprocess(since=T0 - timedelta(days=1))] == []
    with pytest.raises(UnknownDelivery):
        box.add_conversions(9999, store_id="store-a", platform="shopify", conversions=[],
                            outcome="reprocessed", now=now)


# -- reading ---------------------------------------------------------------------------
def test_counts_and_listing(box):
    ids = queue(box, 3)
    claim(box, now=T0 + timedelta(seconds=10), limit=3)
    assert box.counts()["sending"] == 3 and box.counts()["pending"] == 0
    assert set(box.counts()) == set(EventStatus)
    assert box.counts(store_id="store-b")["sending"] == 0
    assert [r.id for r in box.list_events(limit=2)] == ids[::-1][:2]
    assert [r.id for r in box.list_events(limit=2, offset=2)] == ids[:1]
    assert box.list_events(status="pending") == []


# -- attribution -------------------------------------------------------------------------
def waiting(key: str, *, name: str = "EVENT_PURCHASE", **identifiers: str) -> Conversion:
    """A conversion without a click id, found by `identifiers`."""
    return replace(conv(key, click=None, name=name), identifiers=identifiers)


def test_unattributed_events_are_found_by_any_of_their_identifiers(box):
    accept(box, "w-1", [waiting("order:1:EVENT_PURCHASE", order_id="1", cart_token="t1"),
                        waiting("order:1:EVENT_PLACE_ORDER", name="EVENT_PLACE_ORDER", order_id="1")])
    accept(box, "w-2", [waiting("order:2:EVENT_PURCHASE", order_id="2", cart_token="t1")],
           received_at=T0 + timedelta(hours=2))
    accept(box, "w-3", [waiting("order:3:EVENT_PURCHASE", order_id="1", cart_token="t1")], store_id="store-b")
    accept(box, "w-4", [replace(conv("order:4:EVENT_PURCHASE"), identifiers={"order_id": "1"})])  # has a click
    key = {r.id: r.business_key for r in box.list_events()}
    found = box.unattributed_matching("store-a", {"order_id": "1", "cart_token": "t1"}, since=T0)
    assert [(key[i], carried) for i, carried in found] == [
        ("order:1:EVENT_PURCHASE", {"order_id": "1", "cart_token": "t1"}),
        ("order:1:EVENT_PLACE_ORDER", {"order_id": "1"}),
        ("order:2:EVENT_PURCHASE", {"order_id": "2", "cart_token": "t1"}),
    ]
    later = box.unattributed_matching("store-a", {"cart_token": "t1"}, since=T0 + timedelta(hours=1))
    assert [key[i] for i, _ in later] == ["order:2:EVENT_PURCHASE"]
    assert box.unattributed_matching("store-a", {"order_id": "9", "cart_token": ""}, since=T0) == []
    assert box.unattributed_matching("store-a", {"cart_token": ""}, since=T0) == []


def test_attach_click_queues_unattributed_events(box):
    accept(box, "w-1", [conv("order:1:EVENT_PURCHASE", click=None),
                        conv("order:1:EVENT_PLACE_ORDER", click=None, name="EVENT_PLACE_ORDER")])
    accept(box, "w-2", [conv("order:2:EVENT_PURCHASE", click=None)], received_at=T0 + timedelta(hours=2))
    accept(box, "w-3", [conv("order:3:EVENT_PURCHASE", click=None)], store_id="store-b")
    other = box.list_events(store_id="store-b")[0].id
    ids = [r.id for r in box.list_events(store_id="store-a") if r.business_key.startswith("order:1:")]
    now = T0 + timedelta(hours=3)
    assert box.attach_click("store-a", event_ids=ids + [other], click_id="clk-9", source="landing_url", now=now) == 2
    for event_id in ids:
        row = event_of(box, event_id)
        assert (row.status, row.event.click_id, row.click_source, row.next_attempt_at) == (
            "pending", "clk-9", "landing_url", now)
    assert status_of(box, other) == "unattributed"
    assert box.attach_click("store-a", event_ids=ids, click_id="clk-10", source="x", now=now) == 0
    assert event_of(box, ids[0]).event.click_id == "clk-9"
    assert box.attach_click("store-a", event_ids=[], click_id="clk-10", source="x", now=now) == 0


# -- pruning -------------------------------------------------------------------------------
def test_prune_drops_old_bodies_sent_events_and_unneeded_deliveries(box, engine, monkeypatch):
    monkeypatch.setattr(outbox_module, "PRUNE_BATCH", 2)  # several short batches
    old = T0 - timedelta(days=40)
    for i in range(3):  # old, sent long ago: everything goes
        accept(box, f"old-sent-{i}", [conv(f"order:s{i}:EVENT_PURCHASE")], received_at=old)
    box.finish_many([Finish(i, "sent", old, response="ok", result=1) for i in claim(box, now=old, limit=10)])
    kept = accept(box, "old-dead", [conv("order:d:EVENT_PURCHASE")], received_at=old)  # unsent: kept
    (dead,) = claim(box, now=old, limit=10)
    box.finish_many([Finish(dead, "dead", old, error="e", response="r")])
    accept(box, "old-skip", [conv("order:k:EVENT_PURCHASE", skip="test")], received_at=old)
    week = accept(box, "week", [conv("order:w:EVENT_PURCHASE", click=None)], received_at=T0 - timedelta(days=8))
    fresh = accept(box, "fresh", [], received_at=T0 - timedelta(days=1))

    result = box.prune(now=T0, body_days=7, sent_days=30)

    assert result == {"bodies": 6, "events": 4, "deliveries": 4}
    assert table_count(engine, db.deliveries) == 3
    assert delivery_of(engine, kept.delivery_id)["body"] is None
    assert delivery_of(engine, week.delivery_id)["body"] is None
    assert delivery_of(engine, fresh.delivery_id)["body"] == b'{"id": 1}'
    assert sorted(r.business_key for r in box.list_events()) == ["order:d:EVENT_PURCHASE", "order:w:EVENT_PURCHASE"]
    assert box.prune(now=T0) == {"bodies": 0, "events": 0, "deliveries": 0}


def test_ping(box):
    box.ping()
