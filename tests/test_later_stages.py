"""The later stages of an order (adapters.later) through the real app: signed webhooks
from the fixture samples on an injected clock, over a real database; each case a row."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from random import Random

import pytest

from adapters.later import RENEWAL_SKIP
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.worker import Dispatcher
from server import create_app
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ORDER = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
WOO_ORDER = json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json"))
DEFAULTS = ["EVENT_PLACE_ORDER", "EVENT_PURCHASE"]
LATER = ["EVENT_COMPLETE_TRANSACTION", "EVENT_PURCHASE_1_DAY", "EVENT_PURCHASE_2_DAY", "EVENT_PURCHASE_3_DAY",
         "EVENT_PURCHASE_7_DAY"]


class World:
    def __init__(self, tmp_path, database_url, **fields):
        self.now = T0
        stores = [store_entry("shopify", "acme", **fields), store_entry("woocommerce", "woo", **fields)]
        migrate(make_engine(database_url))
        self.app = create_app({"DATABASE_URL": database_url,
                               "STORES": str(write_stores(tmp_path / "stores.toml", stores))}, clock=lambda: self.now)
        self.client = self.app.test_client()
        self.runtime = self.app.extensions["kwai_bridge.runtime"]

    def webhook(self, platform, topic, payload):
        store = "acme" if platform == "shopify" else "woo"
        body = json.dumps(payload).encode()
        headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
        answer = self.client.post(f"/webhooks/{platform}/{store}", data=body, headers=headers)
        assert answer.status_code == 200, answer.json
        convert(self.app)  # the worker's converter, moments later

    def click(self, click_id, **identifiers):
        answer = self.client.post("/clicks/acme", json={"click_id": click_id, **identifiers},
                                  headers={"Origin": "https://acme.myshopify.com"})
        assert answer.status_code == 202, answer.json

    def events(self):
        return {r.business_key: r for r in self.runtime.outbox.list_events(limit=1000)}


def order(oid=4100, *, status="paid", **changes):
    return {**ORDER, "id": oid, "token": f"token-{oid}", "test": False, "financial_status": status,
            "note_attributes": [], "landing_site": None, "cart_token": f"cart-{oid}", "cancelled_at": None,
            "processed_at": T0.isoformat(), "updated_at": T0.isoformat(), **changes}


def woo_order(oid=5100, *, status="processing", meta=(), **changes):
    return {**WOO_ORDER, "id": oid, "status": status, "meta_data": list(meta),
            "date_modified_gmt": "2026-11-27T12:00:00", **changes}


# -- EVENT_COMPLETE_TRANSACTION ---------------------------------------------------------
@pytest.mark.parametrize("platform, topic, body, chosen, expected", [
    ("shopify", "orders/fulfilled", order(fulfillment_status="fulfilled"), True, True),
    ("shopify", "orders/fulfilled", order(fulfillment_status="fulfilled"), False, False),
    ("shopify", "orders/updated", order(fulfillment_status="fulfilled"), True, True),
    ("shopify", "orders/updated", order(fulfillment_status=None), True, False),
    ("woocommerce", "order.updated", woo_order(status="completed"), True, True),
    ("woocommerce", "order.updated", woo_order(status="processing"), True, False),
    ("woocommerce", "order.updated", woo_order(status="completed"), False, False),
], ids=["fulfilled", "fulfilled-not-chosen", "updated-fulfilled", "updated-unfulfilled", "woo-completed",
        "woo-processing", "woo-completed-not-chosen"])
def test_complete_transaction_on_fulfilled_or_completed_when_the_store_sends_it(
        tmp_path, database_url, platform, topic, body, chosen, expected):
    w = World(tmp_path, database_url, events=DEFAULTS + (["EVENT_COMPLETE_TRANSACTION"] if chosen else []))
    w.webhook(platform, topic, body)
    keys = w.events()
    assert (f"order:{body['id']}:EVENT_COMPLETE_TRANSACTION" in keys) is expected
    assert f"order:{body['id']}:EVENT_PURCHASE" in keys  # the paid order's purchase, once


# -- EVENT_PURCHASE_N_DAY ----------------------------------------------------------------
# paid this long after the click -> which N-day purchases are sent (pending), others skipped
DAYS = [
    (timedelta(hours=12), {1, 2, 3, 7}),
    (timedelta(hours=24), {1, 2, 3, 7}),
    (timedelta(hours=30), {2, 3, 7}),
    (timedelta(hours=50), {3, 7}),
    (timedelta(days=6), {7}),
    (timedelta(days=8), set()),
]


@pytest.mark.parametrize("after, sent", DAYS, ids=[str(d) for d, _ in DAYS])
def test_an_n_day_purchase_is_sent_when_paid_within_n_days_of_the_click(tmp_path, database_url, after, sent):
    w = World(tmp_path, database_url, events=DEFAULTS + LATER[1:], late_binding_hours=24, click_window_days=30)
    w.click("Nday1", cart_token="cart-4100")
    w.now = T0 + after
    w.webhook("shopify", "orders/paid", order(processed_at=w.now.isoformat()))
    keys = w.events()
    assert keys["order:4100:EVENT_PURCHASE"].status == "pending"
    for days in (1, 2, 3, 7):
        row = keys[f"order:4100:EVENT_PURCHASE_{days}_DAY"]
        assert (row.status == "pending") is (days in sent), (days, row.status, row.skip_reason)
        if days in sent:
            assert row.event.click_id == "Nday1"
        else:
            assert row.skip_reason == f"EVENT_PURCHASE_{days}_DAY: paid more than {days} day(s) after the click"


def test_an_n_day_purchase_whose_click_time_is_unknown_is_skipped_saying_so(tmp_path, database_url):
    w = World(tmp_path, database_url, events=DEFAULTS + ["EVENT_PURCHASE_1_DAY"])
    attribute = [{"name": "__kwai_click_id", "value": "OnCart1"}]  # on the order: no time with it
    w.webhook("shopify", "orders/paid", order(note_attributes=attribute))
    row = w.events()["order:4100:EVENT_PURCHASE_1_DAY"]
    assert row.status == "skipped" and "time is unknown" in row.skip_reason
    assert w.events()["order:4100:EVENT_PURCHASE"].status == "pending"


# -- subscription renewals ----------------------------------------------------------------
RENEWALS = [
    ("shopify", "orders/paid", order(source_name="subscription_contract"), "skip", "skipped"),
    ("shopify", "orders/paid", order(source_name="subscription_contract"), "purchase", "unattributed"),
    ("shopify", "orders/paid", order(source_name="web"), "skip", "unattributed"),
    ("woocommerce", "order.updated", woo_order(meta=[{"id": 1, "key": "_subscription_renewal", "value": "77"}]),
     "skip", "skipped"),
    ("woocommerce", "order.updated", woo_order(meta=[{"id": 1, "key": "_subscription_renewal", "value": "77"}]),
     "purchase", "unattributed"),
]


@pytest.mark.parametrize("platform, topic, body, setting, status", RENEWALS,
                         ids=["shopify-skip", "shopify-purchase", "shopify-not-renewal", "woo-skip", "woo-purchase"])
def test_subscription_renewals_are_skipped_unless_the_store_sends_them(tmp_path, database_url, platform, topic, body,
                                                                       setting, status):
    w = World(tmp_path, database_url, subscription_renewals=setting)
    w.webhook(platform, topic, body)
    row = w.events()[f"order:{body['id']}:EVENT_PURCHASE"]
    assert row.status == status
    assert row.skip_reason == (RENEWAL_SKIP if status == "skipped" else None)


# -- cancelled or refunded ----------------------------------------------------------------
WITHDRAWN = [
    ("shopify", ("orders/paid", order()), ("orders/cancelled", order(cancelled_at=T0.isoformat())), "cancelled"),
    ("shopify", ("orders/paid", order()), ("orders/updated", order(status="refunded")), "refunded"),
    ("woocommerce", ("order.updated", woo_order()), ("order.updated", woo_order(status="cancelled")), "cancelled"),
    ("woocommerce", ("order.updated", woo_order()), ("order.updated", woo_order(status="refunded")), "refunded"),
]


@pytest.mark.parametrize("platform, paid, withdrawn, why", WITHDRAWN,
                         ids=["shopify-cancelled", "shopify-refunded", "woo-cancelled", "woo-refunded"])
def test_an_order_withdrawn_before_its_purchase_was_sent_is_skipped_with_the_reason(
        tmp_path, database_url, platform, paid, withdrawn, why):
    w = World(tmp_path, database_url)
    w.webhook(platform, *paid)
    oid = paid[1]["id"]
    assert w.events()[f"order:{oid}:EVENT_PURCHASE"].status == "unattributed"  # waits for a click
    w.now += timedelta(hours=2)
    w.webhook(platform, *withdrawn)
    row = w.events()[f"order:{oid}:EVENT_PURCHASE"]
    assert (row.status, row.skip_reason) == ("skipped", f"order {why} before it was sent")
    w.now += timedelta(hours=1)  # a click arriving now binds nothing: the order is gone
    w.click("Late1", cart_token=f"cart-{oid}")
    assert w.events()[f"order:{oid}:EVENT_PURCHASE"].status == "skipped"


def test_a_cancellation_before_the_payment_keeps_the_purchase_from_being_sent(tmp_path, database_url):
    w = World(tmp_path, database_url)
    w.webhook("shopify", "orders/cancelled", order(status="pending", cancelled_at=T0.isoformat()))
    w.click("Early1", cart_token="cart-4100")
    w.webhook("shopify", "orders/paid", order())  # a late, out-of-order delivery
    assert w.events()["order:4100:EVENT_PURCHASE"].status == "skipped"


def test_a_purchase_already_sent_stays_sent_and_is_counted(tmp_path, database_url, kwai, caplog):
    w = World(tmp_path, database_url)
    w.click("Sent1", cart_token="cart-4100")
    w.webhook("shopify", "orders/paid", order())
    client = KwaiClient(kwai.base_url, read_timeout=2)
    try:
        Dispatcher(outbox=w.runtime.outbox, registry=w.runtime.registry, client=client, concurrency=1,
                   lease_seconds=60, clock=lambda: w.now, rng=Random(1)).run(once=True)
    finally:
        client.close()
    assert w.events()["order:4100:EVENT_PURCHASE"].status == "sent"
    caplog.set_level(logging.INFO, logger="kwai_bridge.outbox.withdrawals")
    w.webhook("shopify", "orders/cancelled", order(cancelled_at=T0.isoformat()))
    assert w.events()["order:4100:EVENT_PURCHASE"].status == "sent"
    assert "0 unsent event(s) skipped, 1 already sent and counted" in caplog.text
