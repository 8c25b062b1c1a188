"""Late binding with injected time: a webhook without a click id waits `unattributed`
for the store's late_binding_hours; a click for one of its identifiers inside that
window queues it at once, and the dispatcher delivers it with that click id."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from random import Random

import pytest

from kwai_bridge.attribution import report
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.worker import Dispatcher
from kwai_bridge.kwai.client import KwaiClient
from server import create_app
from tests.clock import Clock
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
CART = json.loads(fixture_bytes("shopify/shopify_carts_create.json"))
WOO_ORDER = json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(tmp_path, database_url, clock):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", late_binding_hours=24),
                                                      store_entry("woocommerce", "woo", late_binding_hours=24)])
    migrate(make_engine(database_url))
    return create_app({"DATABASE_URL": database_url, "STORES": str(stores)}, clock=clock)


def webhook(client, platform: str, store_id: str, topic: str, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
    answer = client.post(f"/webhooks/{platform}/{store_id}", data=body, headers=headers)
    assert answer.status_code == 200 and answer.json["status"] == "received", answer.json
    assert convert(client.application) == 1  # the worker's converter, moments later


ORIGINS = {"acme": "https://" + SHOPS["shopify"], "woo": SHOPS["woocommerce"]}


def click(client, store_id: str, **body) -> None:
    answer = client.post(f"/clicks/{store_id}", json=body, headers={"Origin": ORIGINS[store_id]})
    assert answer.status_code == 202, answer.json


def rows(app, store_id: str = "acme"):
    return app.extensions["kwai_bridge.runtime"].outbox.list_events(store_id=store_id)


def dispatch(app, kwai: FakeKwai, clock: Clock) -> dict[str, int]:
    runtime = app.extensions["kwai_bridge.runtime"]
    client = KwaiClient(kwai.base_url, read_timeout=2)
    try:
        return Dispatcher(outbox=runtime.outbox, registry=runtime.registry, client=client, concurrency=2,
                          lease_seconds=60, clock=clock, rng=Random(3)).run(once=True)
    finally:
        client.close()


def cart(token: str) -> dict:
    return {**CART, "id": token, "token": token}


@pytest.mark.parametrize("after", [timedelta(minutes=1), timedelta(hours=23, minutes=59), timedelta(hours=24)])
def test_cart_webhook_first_then_click_queues_it_at_once_and_it_is_delivered(app, clock, kwai, after):
    client = app.test_client()
    webhook(client, "shopify", "acme", "carts/create", cart("cart-late-1"))
    (row,) = rows(app)
    assert (row.status, row.event.click_id) == ("unattributed", None)
    assert dispatch(app, kwai, clock) == {}

    clock.at(after)
    click(client, "acme", click_id="Late+Click/1=", cart_token="cart-late-1")
    (row,) = rows(app)
    assert (row.status, row.event.click_id, row.click_source) == (
        "pending", "Late+Click/1=", "click_store:cart_token")
    assert dispatch(app, kwai, clock) == {"sent": 1}
    (sent,) = kwai.successes()
    assert (sent.fields["event_name"], sent.fields["clickid"]) == ("EVENT_ADD_TO_CART", "Late+Click/1=")


def test_without_a_click_the_event_stays_unattributed_counted_and_not_sent(app, clock, kwai):
    client = app.test_client()
    webhook(client, "shopify", "acme", "carts/create", cart("cart-never"))
    clock.at(timedelta(hours=24, minutes=1))
    click(client, "acme", click_id="TooLate1", cart_token="cart-never")  # after the window: binds nothing
    (row,) = rows(app)
    assert (row.status, row.event.click_id) == ("unattributed", None)
    assert dispatch(app, kwai, clock) == {} and kwai.received == []
    outbox = app.extensions["kwai_bridge.runtime"].outbox
    assert report(outbox, store_id="acme", since=T0 - timedelta(days=1)) == {
        "EVENT_ADD_TO_CART": {"sources": {}, "unattributed": 1}}
    # The click is kept for events that come later (a new cart update within the click window).
    webhook(client, "shopify", "acme", "carts/update", {**cart("cart-never"), "line_items": CART["line_items"] * 2})
    newer = [r for r in rows(app) if r.status == "pending"]
    assert [(r.event.click_id, r.click_source) for r in newer] == [("TooLate1", "click_store:cart_token")]


def test_a_click_binds_only_the_events_of_its_own_store(app, clock):
    client = app.test_client()
    webhook(client, "shopify", "acme", "carts/create", cart("shared-token"))
    click(client, "woo", click_id="OtherStore", cart_token="shared-token")
    assert [r.status for r in rows(app)] == ["unattributed"]


@pytest.mark.parametrize("order_key, bound", [("wc_order_58d2d042d1d", True), ("wc_order_guessed", False)])
def test_a_woocommerce_order_is_bound_late_only_with_its_order_key(app, clock, kwai, order_key, bound):
    client = app.test_client()
    webhook(client, "woocommerce", "woo", "order.created", WOO_ORDER)
    assert {r.status for r in rows(app, "woo")} == {"unattributed"}
    clock.at(timedelta(minutes=5))
    click(client, "woo", click_id="Woo+Late", order_id="727", order_key=order_key)
    statuses = {r.event_name: (r.status, r.event.click_id) for r in rows(app, "woo")}
    expected = ("pending", "Woo+Late") if bound else ("unattributed", None)
    assert statuses == {"EVENT_PLACE_ORDER": expected, "EVENT_PURCHASE": expected}
    assert dispatch(app, kwai, clock) == ({"sent": 2} if bound else {})


def test_a_click_does_not_replace_the_click_id_a_cart_already_carries(app, clock):
    client = app.test_client()
    webhook(client, "shopify", "acme", "carts/create",
            {**cart("cart-own"), "attributes": {"kwai_click_id": "FromCart"}})
    click(client, "acme", click_id="Other", cart_token="cart-own")
    (row,) = rows(app)
    assert (row.status, row.event.click_id, row.click_source) == ("pending", "FromCart", "attribute")


ORDER = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
GENUINE = "Genuine+Landing/123="  # base64-shaped, as a Kwai click id is


def shopify_order() -> dict:
    return {**ORDER, "test": False, "financial_status": "paid", "landing_site": f"/?click_id={GENUINE}"}


def woo_order() -> dict:
    meta = [{"id": 1, "key": "_wc_order_attribution_session_entry", "value": f"https://woo.example/?click_id={GENUINE}"}]
    return {**WOO_ORDER, "customer_id": 25, "meta_data": meta}


@pytest.mark.parametrize("store_id, forged", [
    ("acme", {"order_id": "820982911946154508"}),  # an order id alone: public, sequential
    ("acme", {"customer_id": "115310627314723954"}),
    ("woo", {"customer_id": "25"}),  # a small counter
    ("woo", {"order_id": "727", "order_key": "wc_order_guessed"}),
])
@pytest.mark.parametrize("origin", ["store", None])
def test_a_forged_click_cannot_take_an_order_from_its_own_landing_url(app, clock, store_id, forged, origin):
    client = app.test_client()
    headers = {"Origin": ORIGINS[store_id]} if origin else {}
    answer = client.post(f"/clicks/{store_id}", json={"click_id": "Forged", **forged}, headers=headers)
    assert answer.status_code in (202, 400, 401, 403)  # 202: stored, yet it must bind nothing
    clock.at(timedelta(minutes=2))
    if store_id == "acme":
        webhook(client, "shopify", "acme", "orders/paid", shopify_order())
    else:
        webhook(client, "woocommerce", "woo", "order.updated", woo_order())
    found = {(r.event.click_id, r.click_source) for r in rows(app, store_id)}
    assert found == {(GENUINE, "landing_url")}


def test_a_shopify_order_is_bound_by_its_id_with_the_order_token(app, clock):
    client = app.test_client()
    webhook(client, "shopify", "acme", "orders/paid", {**shopify_order(), "landing_site": None})
    clock.at(timedelta(minutes=5))
    answer = client.post("/clicks/acme", json={"click_id": "Keyed", "order_id": "820982911946154508",
                                               "order_key": "not-the-token"}, headers={"Origin": ORIGINS["acme"]})
    assert answer.status_code == 202
    assert {r.status for r in rows(app)} == {"unattributed"}
    click(client, "acme", click_id="Keyed", order_id="820982911946154508", order_key="123456abcd")
    assert {(r.status, r.event.click_id, r.click_source) for r in rows(app)} == {
        ("pending", "Keyed", "click_store:order_id")}
