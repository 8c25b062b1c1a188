"""`POST /events/<store_id>`: storefront events through Flask's test client over a real
database on an injected clock; the snippet and pixel that post them are
tests/test_storefront_browser.py."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.clock import Clock
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, app_with_stores, store_entry
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
STOREFRONT = "https://acme.myshopify.com"
WOO = "https://woo.example"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_for(tmp_path, database_url, clock):
    def build(acme=None, **settings_):
        stores = [store_entry("shopify", "acme", **(acme or {})),
                  store_entry("woocommerce", "woo", shop="https://woo.example")]
        return app_with_stores(tmp_path, database_url, stores, clock=clock, **settings_)
    return build


@pytest.fixture
def client(app_for):
    return app_for().test_client()


def post(client, body, *, store="acme", origin=STOREFRONT, addr="198.51.100.1", content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(f"/events/{store}", data=data, headers={"Origin": origin} if origin else {},
                       content_type=content_type, environ_base={"REMOTE_ADDR": addr})


def rows(client, store="acme"):
    outbox = client.application.extensions["kwai_bridge.runtime"].outbox
    return sorted((r for r in outbox.list_events(limit=1000) if r.store_id == store), key=lambda r: r.id)


VIEW = {"event": "EVENT_CONTENT_VIEW", "event_id": "pv-0001-aaaa", "click_id": "Ck+1/x==", "product_id": "632910392",
        "variant_id": "808950810", "content_name": "IPod Nano", "content_category": "Music players",
        "price": "199.00", "currency": "usd"}


def test_a_content_view_is_stored_pending_with_its_click_and_product(client):
    answer = post(client, VIEW)
    assert answer.status_code == 202 and answer.json == {"status": "stored", "event": "EVENT_CONTENT_VIEW"}
    [row] = rows(client)
    event = row.event
    assert (row.status, row.business_key, row.click_source) == ("pending", "browser:pv-0001-aaaa:EVENT_CONTENT_VIEW",
                                                                "storefront")
    assert (event.click_id, event.value, event.currency, event.content_id, event.content_name,
            event.content_category, event.event_time) == ("Ck+1/x==", Decimal("199.00"), "USD", "632910392",
                                                          "IPod Nano", "Music players", T0)
    assert answer.headers["Access-Control-Allow-Origin"] == STOREFRONT


def test_the_same_event_id_twice_is_one_event(client):
    assert post(client, VIEW).status_code == 202
    again = post(client, {**VIEW, "price": "1.00"})
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    assert len(rows(client)) == 1


@pytest.mark.parametrize("body, field", [
    ({**VIEW, "email": "a@b.c"}, "email"),
    ({k: v for k, v in VIEW.items() if k != "click_id"}, "click_id"),
    ({**VIEW, "event": "EVENT_PURCHASE"}, "event"),
    ({**VIEW, "event_id": "short"}, "event_id"),
    ({**VIEW, "price": "NaN"}, "price"),
    ({**VIEW, "quantity": "2"}, "quantity"),
    ({"event": "EVENT_SEARCH", "event_id": "search-0001", "click_id": "C1"}, "query"),
])
def test_a_wrong_body_is_refused_naming_the_field_and_stores_nothing(client, body, field):
    answer = post(client, body)
    assert answer.status_code == 400 and field in answer.json["errors"], answer.json
    assert rows(client) == []


def test_json_is_read_whatever_the_content_type(client):
    answer = post(client, json.dumps(VIEW), content_type="text/plain")
    assert answer.status_code == 202


@pytest.mark.parametrize("origin, status", [(None, 401), ("https://evil.example", 403)])
def test_only_the_stores_own_origins_may_post(client, origin, status):
    assert post(client, VIEW, origin=origin).status_code == status
    assert rows(client) == []


def test_the_checkout_pixels_sandbox_reports_checkout_steps_of_a_checkout_token_only(client):
    started = {"event": "EVENT_INITIATED_CHECKOUT", "event_id": "chk-k1-started", "click_id": "Px1",
               "checkout_token": "k1", "value": "20.00", "currency": "BRL"}
    assert post(client, started, origin="null", content_type="text/plain").status_code == 202
    assert post(client, VIEW, origin="null").status_code == 403
    assert post(client, {**started, "checkout_token": None, "event_id": "chk-none-1"} | {}, origin="null").status_code == 400
    no_token = {k: v for k, v in started.items() if k != "checkout_token"} | {"event_id": "chk-none-2"}
    assert post(client, no_token, origin="null").status_code == 403
    assert [r.business_key for r in rows(client)] == ["checkout:k1:EVENT_INITIATED_CHECKOUT"]


def test_a_body_over_the_limit_is_413(client):
    assert post(client, {**VIEW, "content_name": "x" * 5000}).status_code == 413


def test_the_address_limit_answers_429_with_retry_after(app_for):
    client = app_for(CLICKS_PER_ADDRESS="2").test_client()
    assert [post(client, {**VIEW, "event_id": f"pv-limit-{i}"}).status_code for i in range(3)] == [202, 202, 429]
    refused = post(client, {**VIEW, "event_id": "pv-limit-9"})
    assert refused.json["status"] == "too many events from this address" and int(refused.headers["Retry-After"]) > 0
    assert post(client, {**VIEW, "event_id": "pv-limit-x"}, addr="198.51.100.2").status_code == 202


def test_an_event_the_store_does_not_send_is_not_stored(app_for):
    client = app_for(acme={"events": ["EVENT_PURCHASE"]}).test_client()
    answer = post(client, VIEW)
    assert answer.status_code == 202 and answer.json["status"] == "not sent by this store"
    assert rows(client) == []


def test_a_triggered_event_needs_a_trigger_the_store_lists(app_for):
    body = {"event": "EVENT_CONTACT", "event_id": "contact-0001", "click_id": "C1"}
    plain = app_for().test_client()
    assert post(plain, body).status_code == 422
    listed = app_for(acme={"events": ["EVENT_PURCHASE", "EVENT_CONTACT"],
                           "event_triggers": ["EVENT_CONTACT a[href^='https://wa.me/']"]}).test_client()
    assert post(listed, {**body, "event_id": "contact-0002"}).status_code == 202


# -- one event from the browser and the webhook ----------------------------------------
CART = json.loads(fixture_bytes("shopify/shopify_carts_create.json", shop=SHOPS["shopify"]))
CHECKOUT = json.loads(fixture_bytes("shopify/shopify_checkouts_create.json", shop=SHOPS["shopify"]))


def webhook(client, topic, payload):
    body = json.dumps(payload).encode()
    headers = headers_for("shopify", topic, shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body)
    answer = client.post("/webhooks/shopify/acme", data=body, headers=headers)
    assert answer.status_code == 200, answer.json
    convert(client.application)  # the worker's converter, moments later


def cart_add(token, count, event_id):
    return {"event": "EVENT_ADD_TO_CART", "event_id": event_id, "click_id": "Cart1", "cart_token": token + "?key=k",
            "item_count": count, "product_id": "632910392", "quantity": 1, "price": "19.99", "currency": "USD"}


@pytest.mark.parametrize("browser_first", [True, False], ids=["browser-first", "webhook-first"])
def test_a_cart_add_seen_by_the_snippet_and_carts_update_is_one_event_with_the_click(client, clock, browser_first):
    token = "cartZ1"
    payload = {**CART, "id": token, "token": token}
    count = sum(line["quantity"] for line in CART["line_items"])
    if browser_first:
        assert post(client, cart_add(token, count, "add-cartZ1-a")).status_code == 202
        clock.now += timedelta(seconds=2)
        webhook(client, "carts/update", payload)
    else:
        webhook(client, "carts/update", payload)
        clock.now += timedelta(seconds=2)
        answer = post(client, cart_add(token, count, "add-cartZ1-b"))
        assert answer.json["status"] == "duplicate"
    [row] = rows(client)
    assert (row.business_key, row.status, row.event.click_id) == (
        f"cart:{token}:EVENT_ADD_TO_CART:{count}", "pending", "Cart1")


@pytest.mark.parametrize("pixel_first", [True, False], ids=["pixel-first", "webhook-first"])
def test_checkout_started_and_checkouts_create_are_one_event(client, clock, pixel_first):
    started = {"event": "EVENT_INITIATED_CHECKOUT", "event_id": "chk-k9-started", "click_id": "Px9",
               "checkout_token": "k9"}
    payload = {**CHECKOUT, "token": "k9", "note_attributes": [], "landing_site": None}
    if pixel_first:
        post(client, started, origin="null", content_type="text/plain")
    webhook(client, "checkouts/create", payload)
    if not pixel_first:
        post(client, started, origin="null", content_type="text/plain")
    [row] = rows(client)
    assert (row.business_key, row.status, row.event.click_id) == ("checkout:k9:EVENT_INITIATED_CHECKOUT", "pending",
                                                                  "Px9")


def test_a_renamed_cart_kind_renames_the_snippets_cart_add(app_for):
    client = app_for(acme={"events": ["EVENT_PURCHASE", "EVENT_ADD_TO_WISHLIST"],
                           "topic_events": {"carts/create": "EVENT_ADD_TO_WISHLIST",
                                            "carts/update": "EVENT_ADD_TO_WISHLIST"}}).test_client()
    answer = post(client, cart_add("cartR", 2, "add-cartR-1"))
    assert answer.json == {"status": "stored", "event": "EVENT_ADD_TO_WISHLIST"}
    assert [r.business_key for r in rows(client)] == ["cart:cartR:EVENT_ADD_TO_WISHLIST:2"]


def test_the_log_names_no_click_id_nor_query(client, caplog):
    caplog.set_level(logging.INFO)
    post(client, {"event": "EVENT_SEARCH", "event_id": "search-0002", "click_id": "SecretClick1",
                  "query": "maria silva cpf"})
    assert "SecretClick1" not in caplog.text and "maria" not in caplog.text
