"""The Admin API clients: answers read on recorded shapes (pure), and each client on
loopback against the fakes (tests/fake_platforms.py): pages, throttling honoured,
credentials refused, 5xx backed off."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

import adapters
from adapters.values import ConversionOptions, Notification
from kwai_bridge.config import StoreConfig
from kwai_bridge.platforms import CredentialsRefused, Refused, Transport, Unavailable, client_for
from kwai_bridge.platforms.base import Reply, refusal, retry_after
from kwai_bridge.platforms.shopify import Cost, cost_of, data_of, throttled
from kwai_bridge.platforms.shopify_orders import webhook_order
from kwai_bridge.platforms.shopline import next_link
from tests.conftest import fixture_bytes
from tests.fake_platforms import FAKES, TOKEN, WC_KEY, WC_SECRET, graphql_order, sample_order

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)


def store_for(fake, **overrides) -> StoreConfig:
    values = dict(id=f"{fake.name}-store", platform=fake.name, shop=fake.shop, webhook_secrets=("s" * 16,),
                  pixel_id="p", access_token="t" * 16, admin_api_url=fake.base)
    if fake.name == "woocommerce":
        values.update(consumer_key=WC_KEY, consumer_secret=WC_SECRET)
    else:
        values.update(admin_api_token=TOKEN)
    values.update(overrides)
    return StoreConfig(**values)


@pytest.fixture(params=sorted(FAKES))
def fake(request):
    with FAKES[request.param](page_limit=250) as fake:
        yield fake


# -- pure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status, kind", [(200, None), (201, None), (401, CredentialsRefused),
                                          (403, CredentialsRefused), (404, Refused), (422, Refused),
                                          (503, Unavailable)])
def test_refusal_classifies_answers(status, kind):
    found = refusal(Reply(status, {}, b'{"errors": "[API] Invalid API key or access token"}'))
    assert (type(found) if found else None) is kind
    if kind is CredentialsRefused:
        assert "Invalid API key" in str(found)


@pytest.mark.parametrize("header, expected", [("2", 2.0), ("0.25", 0.25), ("", 1.0), ("soon", 1.0),
                                              ("100000", 60.0), ("-3", 0.0)])
def test_retry_after(header, expected):
    assert retry_after({"retry-after": header} if header else {}) == expected


def test_shopify_throttled_answer_is_read():
    recorded = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                "extensions": {"cost": {"requestedQueryCost": 752, "actualQueryCost": None, "throttleStatus": {
                    "maximumAvailable": 1000.0, "currentlyAvailable": 666, "restoreRate": 50.0}}}}
    assert throttled(recorded)
    cost = cost_of(recorded)
    assert cost == Cost(752, 666, 1000, 50)
    assert cost.wait_for(752) == pytest.approx((752 - 666) / 50)
    assert Cost(10, 500, 1000, 50).wait_for(10) == 0


def test_shopify_user_errors_are_refusals():
    with pytest.raises(Refused, match="already been taken"):
        data_of({"data": {"webhookSubscriptionCreate": {"userErrors": [
            {"field": ["callbackUrl"], "message": "Address for this topic has already been taken"}]}}},
            "webhookSubscriptionCreate")


def test_shopline_link_header():
    reply = Reply(200, {"link": '<https://a.myshopline.com/admin/openapi/v1/orders.json?page_info=abc&limit=5>; '
                                'rel="next", <https://x/prev>; rel="previous"'}, b"{}")
    assert next_link(reply) == "https://a.myshopline.com/admin/openapi/v1/orders.json?page_info=abc&limit=5"
    assert next_link(Reply(200, {}, b"{}")) is None


def _conversions(platform: str, payload: dict) -> list:
    adapter = adapters.REGISTRY[platform]
    note = Notification(platform=platform, topic="orders/updated", shop="acme.myshopify.com", delivery_id=None,
                        payload=payload)
    return adapter.to_conversions(note, options=ConversionOptions())


def test_shopify_graphql_order_converts_as_its_webhook_does():
    """The recorded webhook order, answered as GraphQL and mapped back, yields the same
    purchase (value, currency, contents, click id, identifiers) as the webhook itself."""
    webhook = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop="acme.myshopify.com"))
    webhook.update(financial_status="paid", note_attributes=[{"name": "_kwai_click_id", "value": "CLICK-1"}])
    webhook.pop("token", None)  # the GraphQL order has no token
    mapped = webhook_order(graphql_order(webhook))
    assert mapped["id"] == webhook["id"] and mapped["financial_status"] == "paid"
    (from_webhook,), (from_api,) = _conversions("shopify", webhook), _conversions("shopify", mapped)
    assert from_api.event == from_webhook.event
    assert from_api.click_source == "attribute"
    assert dict(from_api.identifiers) == dict(from_webhook.identifiers)


def test_shopify_mapping_reads_gids_and_the_landing_page():
    node = {"id": "gid://shopify/Order/450789469", "displayFinancialStatus": "PARTIALLY_PAID",
            "customerJourneySummary": {"lastVisit": None, "firstVisit": {"landingPage": "https://a/?click_id=X"}},
            "customer": {"id": "gid://shopify/Customer/207119551"}, "lineItems": {"edges": [{"node": {
                "quantity": 2, "variant": {"id": "gid://shopify/ProductVariant/39072856"}}}]}}
    order = webhook_order(node)
    assert order["id"] == 450789469 and order["financial_status"] == "partially_paid"
    assert order["landing_site"] == "https://a/?click_id=X" and order["customer"]["id"] == 207119551
    assert order["line_items"] == [{"quantity": 2, "variant_id": 39072856}]


# -- against the fakes ------------------------------------------------------------------------
def _fill(fake, count: int) -> list[str]:
    for i in range(count):
        fake.add_order(sample_order(fake.name, fake.shop, order_id=7000 + i,
                                    updated=NOW - timedelta(minutes=count - i), click_id=f"c{i}"))
    return [str(7000 + i) for i in range(count)]


def test_orders_come_in_pages_oldest_change_first(fake):
    ids = _fill(fake, 130)
    client = client_for(store_for(fake), page_size=25)
    pages = list(client.orders(since=NOW - timedelta(days=1)))
    assert len(pages) == 6
    assert [str(o["id"]) for p in pages for o in p.orders] == ids
    assert pages[-1].last_updated == NOW - timedelta(minutes=1)
    later = list(client.orders(since=NOW - timedelta(minutes=10)))
    assert [str(o["id"]) for p in later for o in p.orders] == ids[-10:]


def test_throttled_answers_are_waited_out(fake):
    _fill(fake, 60)
    fake.throttle_next(6, retry_after=0.05)
    transport = Transport()
    pages = list(client_for(store_for(fake), transport=transport, page_size=20).orders(since=NOW - timedelta(days=1)))
    assert sum(len(p.orders) for p in pages) == 60
    assert fake.throttled == 6 and fake.too_early == 0
    assert transport.waited >= 6 * 0.05 - 1e-9


@pytest.mark.parametrize("platform", ["shopline", "woocommerce"])
def test_a_rate_limit_is_never_exceeded(platform):
    with FAKES[platform](requests_per_second=8, burst=2) as fake:
        _fill(fake, 80)
        transport = Transport()
        pages = list(client_for(store_for(fake), transport=transport, page_size=10).orders(since=NOW - timedelta(days=1)))
        assert sum(len(p.orders) for p in pages) == 80
        assert fake.throttled > 0 and fake.too_early == 0


def test_shopify_query_cost_is_honoured():
    with FAKES["shopify"](bucket=200, restore_rate=2000) as fake:
        _fill(fake, 300)
        pages = list(client_for(store_for(fake), page_size=50).orders(since=NOW - timedelta(days=1)))
        assert sum(len(p.orders) for p in pages) == 300
        assert fake.too_early == 0


def test_refused_credentials_carry_the_platform_message(fake):
    fake.credentials_ok = False
    with pytest.raises(CredentialsRefused) as caught:
        client_for(store_for(fake)).subscriptions()
    assert "401" in str(caught.value)
    assert len(fake.requests) == 1  # no retry loop


def test_5xx_and_timeouts_back_off_then_give_up():
    waits: list[float] = []

    class Down(requests.Session):
        def request(self, *args, **kwargs):
            raise requests.ConnectTimeout("no answer")

    transport = Transport(session=Down(), sleep=waits.append, backoff=(1.0, 2.0))
    with pytest.raises(Unavailable, match="ConnectTimeout after 3 tries"):
        transport.request("GET", "https://shop.example/wp-json/wc/v3/orders", headers={})
    assert waits == [1.0, 2.0]
