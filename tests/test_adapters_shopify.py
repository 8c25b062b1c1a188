"""Shopify: the docs samples as they are, cases derived from them (the change named),
and the exact Kwai wire body each case produces."""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from adapters import shopify
from adapters.values import ConversionOptions, PayloadError, PrivacyRequest, SignatureError, WebhookRequest
from kwai_bridge.kwai.events import Content
from tests.adapter_helpers import delivery, sha, wire
from tests.conftest import fixture_bytes
from tests.signing import headers_for

SECRET = "shpss_test_secret"
SHOP = "demo.myshopify.com"
NEW_YEAR = datetime(2022, 1, 1, tzinfo=timezone.utc)  # the samples' 2021-12-31T19:00:00-05:00
NEW_YEAR_MS = 1640995200000


def sample(name: str) -> dict:
    return json.loads(fixture_bytes(f"shopify/shopify_{name}.json", shop=SHOP))


def changed(name: str, **changes) -> dict:
    payload = copy.deepcopy(sample(name))
    payload.update(changes)
    return payload


deliver = delivery(shopify, shop=SHOP, secret=SECRET)


def convert(topic, payload, options=ConversionOptions()):
    return deliver(topic, payload, options)[1]


WIRE_BASE = {"access_token": "tok", "pixelId": "px", "testFlag": False, "trackFlag": False,
             "is_attributed": 1, "mmpcode": "PL", "pixelSdkVersion": "9.9.9", "third_party": "shopify"}
ORDER_CONTENTS = [{"id": "788032119674292922", "quantity": 1, "price": Decimal("89.99")},
                  {"id": "788032119674292922", "quantity": 1, "price": Decimal("159.99")},
                  {"id": "788032119674292922", "quantity": 1, "price": Decimal("119.99")}]
ORDER_PROPS = {"event_timestamp": NEW_YEAR_MS, "content_type": "product", "contents": ORDER_CONTENTS,
               "content_id": "788032119674292922", "content_name": "Aviator sunglasses", "quantity": 5}
CHECKOUT_PROPS = {"event_timestamp": NEW_YEAR_MS, "content_type": "product",
                  "contents": [{"id": "632910392", "quantity": 1, "price": Decimal("199.00")}] * 2,
                  "content_id": "632910392", "content_name": "IPod Nano - 8GB", "quantity": 2}


def test_published_test_vector():
    body = b'{"id":820982911946154508,"topic_test":"orders/create"}'
    request = WebhookRequest.build({"X-Shopify-Hmac-SHA256": "jLOQxNWGPBKIuLAgUhExVQV5wKB2CKFgCDHQ1/xGwhk="}, body)
    shopify.verify(request, secrets=["test-shopify-client-secret"])
    with pytest.raises(SignatureError):
        shopify.verify(request, secrets=["test-shopify-client-secret "])
    hex_form = WebhookRequest.build({"X-Shopify-Hmac-Sha256": hashlib.sha256(body).hexdigest()}, body)
    with pytest.raises(SignatureError):  # Shopify signs in base64 only
        shopify.verify(hex_form, secrets=["test-shopify-client-secret"])


# -- the samples as they are -------------------------------------------------------------
def test_orders_create_sample_is_a_skipped_test_order():
    notification, conversions = deliver("orders/create", fixture_bytes("shopify/shopify_orders_create.json", shop=SHOP))
    assert (notification.shop, notification.kind) == (SHOP, "conversion")
    [conversion] = conversions  # financial_status voided: no purchase
    event = conversion.event
    assert conversion.skip_reason == "test order"
    assert (event.event_name, event.idempotency_key) == ("EVENT_PLACE_ORDER", "order:820982911946154508:EVENT_PLACE_ORDER")
    assert (event.value, event.currency, event.event_time) == (Decimal("404.95"), "USD", NEW_YEAR)
    assert (event.click_id, conversion.click_source, conversion.value_note) == (None, None, None)
    # two lines have no product id (a protection plan, a case): not contents, still counted
    assert event.contents == tuple(Content(c["id"], c["quantity"], c["price"]) for c in ORDER_CONTENTS)
    assert (event.content_id, event.content_name, event.quantity) == ("788032119674292922", "Aviator sunglasses", 5)
    assert conversion.identifiers == {"order_id": "820982911946154508", "order_key": "123456abcd",
                                      "customer_id": "115310627314723954", "email_sha256": sha("jon@example.com")}
    assert "jon@example.com" not in repr(conversions)


@pytest.mark.parametrize(("topic", "expected"), [
    ("orders/paid", ["EVENT_PURCHASE"]),  # the topic says paid, whatever the sample's status
    ("orders/updated", []),  # voided is not paid (and withdraws what was not sent: tests/test_later_stages.py)
    ("orders/cancelled", []),  # withdraws the order's unsent events, sends none
    ("refunds/create", []),
    ("order_transactions/create", []),
])
def test_other_order_topics_on_the_sample(topic, expected):
    conversions = [c for c in convert(topic, sample("orders_create")) if not c.withdraw]
    assert [c.event.event_name for c in conversions] == expected
    assert all(c.skip_reason == "test order" for c in conversions)


@pytest.mark.parametrize(("topic", "name"), [("refunds/create", "refunds_create"),
                                             ("order_transactions/create", "order_transactions_create")])
def test_refund_and_transaction_samples_give_nothing(topic, name):
    assert convert(topic, fixture_bytes(f"shopify/shopify_{name}.json", shop=SHOP)) == []


def test_carts_create_sample_is_an_unattributed_add_to_cart():
    [conversion] = convert("carts/create", fixture_bytes("shopify/shopify_carts_create.json", shop=SHOP))
    event = conversion.event
    assert (event.event_name, event.idempotency_key) == ("EVENT_ADD_TO_CART", "cart:exampleCartId:EVENT_ADD_TO_CART:3")
    assert conversion.high_water == ("cart:exampleCartId", 3)
    assert (event.value, event.currency, event.event_time) == (Decimal("59.97"), "USD", NEW_YEAR)
    assert event.contents == (Content("788032119674292922", 3, Decimal("19.99")),)
    assert (event.content_id, event.content_name, event.quantity) == ("788032119674292922", "Example T-Shirt - Small", 3)
    assert (event.click_id, conversion.skip_reason) == (None, None)
    assert conversion.identifiers == {"cart_token": "exampleCartId"}


def test_checkouts_create_sample():
    [conversion] = convert("checkouts/create", fixture_bytes("shopify/shopify_checkouts_create.json", shop=SHOP))
    event = conversion.event
    assert (event.event_name, event.idempotency_key) == ("EVENT_INITIATED_CHECKOUT", "checkout:123123123:EVENT_INITIATED_CHECKOUT")
    assert (event.value, event.currency, event.event_time, event.click_id) == (Decimal("421.88"), "USD", NEW_YEAR, None)
    assert conversion.identifiers == {"checkout_token": "123123123", "cart_token": "eeafa272cebfd4b22385bc4b645e762c",
                                      "customer_id": "603851970716743426", "email_sha256": sha("example@email.com")}
    assert "example@email.com" not in repr(conversion)


@pytest.mark.parametrize(("topic", "name", "expected"), [
    ("customers/data_request", "customers_data_request", "data_request"),
    ("customers/redact", "customers_redact", "redact_customer"),
])
def test_customer_privacy_samples(topic, name, expected):
    notification, conversions = deliver(topic, fixture_bytes(f"shopify/shopify_{name}.json", shop=SHOP),
                                        ConversionOptions(topic_events={topic: "EVENT_PURCHASE"}))
    assert (notification.kind, conversions) == ("privacy", [])
    assert shopify.privacy_request(notification) == PrivacyRequest(
        action=expected, customer_id="191167", email_sha256=sha("john@example.com"),
        phone_sha256=sha("5556251199"), order_ids=("299938", "280263", "220458"))


def test_shop_redact_sample():
    notification, conversions = deliver("shop/redact", fixture_bytes("shopify/shopify_shop_redact.json", shop=SHOP))
    assert (notification.kind, conversions) == ("privacy", [])
    assert shopify.privacy_request(notification) == PrivacyRequest(action="redact_shop")


# -- derived cases and the exact wire body -------------------------------------------------
WIRE_CASES = [
    ("orders/paid, test false, kwai_click_id note attribute", "orders/paid",
     changed("orders_create", test=False, note_attributes=[{"name": "kwai_click_id", "value": " KW+click/1= "}]),
     [({**WIRE_BASE, "clickid": "KW+click/1=", "event_name": "EVENT_PURCHASE", "currency": "USD", "value": "404.95"},
       ORDER_PROPS)]),
    ("orders/create already paid, click id in landing_site", "orders/create",
     changed("orders_create", test=False, financial_status="paid", landing_site="/?utm_source=kwai&click_id=Ab%2B9%3D"),
     [({**WIRE_BASE, "clickid": "Ab+9=", "event_name": "EVENT_PLACE_ORDER", "currency": "USD", "value": "404.95"}, ORDER_PROPS),
      ({**WIRE_BASE, "clickid": "Ab+9=", "event_name": "EVENT_PURCHASE", "currency": "USD", "value": "404.95"}, ORDER_PROPS)]),
    ("orders/updated once paid, hidden _kwai_click_id attribute", "orders/updated",
     changed("orders_create", test=False, financial_status="paid", processed_at=None,
             updated_at="2024-05-01T12:00:00Z", note_attributes=[{"name": "_kwai_click_id", "value": "U1"}]),
     [({**WIRE_BASE, "clickid": "U1", "event_name": "EVENT_PURCHASE", "currency": "USD", "value": "404.95"},
       {**ORDER_PROPS, "event_timestamp": 1714564800000})]),
    ("checkouts/create with kwai_click_id note attribute", "checkouts/create",
     changed("checkouts_create", note_attributes=[{"name": "kwai_click_id", "value": "CK1"}]),
     [({**WIRE_BASE, "clickid": "CK1", "event_name": "EVENT_INITIATED_CHECKOUT", "currency": "USD", "value": "421.88"},
       CHECKOUT_PROPS)]),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), [c[1:] for c in WIRE_CASES], ids=[c[0] for c in WIRE_CASES])
def test_wire_body(topic, payload, expected):
    assert [wire(c.event) for c in convert(topic, payload)] == expected


@pytest.mark.parametrize(("options", "value", "ids", "content_id"), [
    (ConversionOptions(value="subtotal"), "398.00", ["632910392", "632910392"], "632910392"),
    (ConversionOptions(content_id="variant"), "421.88", ["808950810", "808950810"], "808950810"),
    (ConversionOptions(content_id="sku"), "421.88", ["IPOD2008PINK", "IPOD2008PINK"], "IPOD2008PINK"),
])
def test_checkout_options_on_the_wire(options, value, ids, content_id):
    payload = changed("checkouts_create", landing_site="https://demo.myshopify.com/?click_id=L1")
    [conversion] = convert("checkouts/create", payload, options)
    body, props = wire(conversion.event)
    assert (body["value"], body["clickid"], conversion.click_source) == (value, "L1", "landing_url")
    assert ([c["id"] for c in props["contents"]], props["content_id"]) == (ids, content_id)


# -- value and currency -------------------------------------------------------------------
def _money(amount, currency):
    return {"amount": amount, "currency_code": currency}


def _set(presentment, shop):
    return {"presentment_money": _money(*presentment), "shop_money": _money(*shop)}


CURRENCY_CASES = [
    ("shopper's currency accepted", {"total_price_set": _set(("2000.50", "BRL"), ("404.95", "USD"))},
     ConversionOptions(), Decimal("2000.50"), "BRL"),
    ("else the shop's", {"total_price_set": _set(("370.00", "EUR"), ("404.95", "USD"))},
     ConversionOptions(), Decimal("404.95"), "USD"),
    ("else converted, half up", {"total_price_set": _set(("10.01", "EUR"), ("10.01", "EUR"))},
     ConversionOptions(currency_rates={"EUR": Decimal("0.5")}, report_currency="BRL"), Decimal("5.01"), "BRL"),
    ("no rate: no value", {"total_price_set": _set(("10.01", "EUR"), ("10.01", "EUR"))},
     ConversionOptions(), None, None),
    ("rate but no report currency", {"total_price_set": _set(("10.01", "EUR"), ("10.01", "EUR"))},
     ConversionOptions(currency_rates={"EUR": Decimal("0.5")}), None, None),
    ("blank sets fall back to total_price", {"total_price_set": _set(("", "USD"), ("", "USD")),
                                             "current_total_price_set": None, "total_price": "12.5"},
     ConversionOptions(), Decimal("12.50"), "USD"),
    ("no amount anywhere", {"total_price_set": None, "current_total_price_set": None, "total_price": None,
                            "current_total_price": ""}, ConversionOptions(), None, None),
]


@pytest.mark.parametrize(("changes", "options", "value", "currency"), [c[1:] for c in CURRENCY_CASES],
                         ids=[c[0] for c in CURRENCY_CASES])
def test_value_and_currency(changes, options, value, currency):
    [conversion] = convert("orders/paid", changed("orders_create", **changes), options)
    assert (conversion.event.value, conversion.event.currency) == (value, currency)
    assert (conversion.value_note is None) == (value is not None)


def test_converted_value_converts_line_prices_too():
    payload = changed("orders_create", currency="EUR", presentment_currency="EUR",
                      total_price_set=_set(("10.01", "EUR"), ("10.01", "EUR")))
    for line in payload["line_items"]:
        line["price_set"] = _set((line["price"], "EUR"), (line["price"], "EUR"))
    [conversion] = convert("orders/paid", payload, ConversionOptions(currency_rates={"EUR": Decimal("0.5")},
                                                                     report_currency="USD"))
    assert [c.price for c in conversion.event.contents] == [Decimal("45.00"), Decimal("80.00"), Decimal("60.00")]
    [unpriced] = convert("orders/paid", payload)
    assert "EUR" in unpriced.value_note and [c.price for c in unpriced.event.contents] == [None] * 3


# -- options, times, click ids ---------------------------------------------------------------
PAID = changed("orders_create", test=False, financial_status="paid")


@pytest.mark.parametrize(("topic", "payload", "options", "expected"), [
    ("orders/create", sample("orders_create"), ConversionOptions(test_mode=True), [("EVENT_PLACE_ORDER", None)]),
    ("orders/create", PAID, ConversionOptions(topic_events={"orders/create": ""}), []),
    ("orders/create", PAID, ConversionOptions(topic_events={"orders/create": "EVENT_PURCHASE"}), [("EVENT_PURCHASE", None)]),
    ("orders/create", PAID, ConversionOptions(), [("EVENT_PLACE_ORDER", None), ("EVENT_PURCHASE", None)]),
    ("orders/create", changed("orders_create", test=False, financial_status="pending"), ConversionOptions(),
     [("EVENT_PLACE_ORDER", None)]),
    ("checkouts/create", sample("checkouts_create"), ConversionOptions(topic_events={"checkouts/create": "EVENT_ADD_PAYMENT_INFO"}),
     [("EVENT_ADD_PAYMENT_INFO", None)]),
    ("orders/paid", sample("orders_create"), ConversionOptions(), [("EVENT_PURCHASE", "test order")]),
])
def test_topics_and_store_options(topic, payload, options, expected):
    conversions = convert(topic, payload, options)
    assert [(c.event.event_name, c.skip_reason) for c in conversions] == expected
    assert all(c.event.idempotency_key.endswith(c.event.event_name) for c in conversions)


@pytest.mark.parametrize(("content_id", "ids", "single", "name"), [
    ("variant", ["788032119674292922"] * 3, "788032119674292922", "Aviator sunglasses"),  # no variant: product id
    ("sku", ["SKU2006-001", "LENS-PROTECT-2YR", "CASE-LEATHER-PREM", "SKU2006-020", "SKU2006-035"], None, "#9999"),
])
def test_content_ids_on_the_order_sample(content_id, ids, single, name):
    [conversion] = convert("orders/paid", PAID, ConversionOptions(content_id=content_id))
    event = conversion.event
    assert ([c.id for c in event.contents], event.content_id, event.content_name) == (ids, single, name)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"processed_at": "2024-03-01T10:00:00+02:00"}, datetime(2024, 3, 1, 8, tzinfo=timezone.utc)),
    ({"processed_at": None, "updated_at": "2024-03-02T00:00:00.123Z"}, datetime(2024, 3, 2, 0, 0, 0, 123000, tzinfo=timezone.utc)),
    ({"processed_at": "not a time", "updated_at": None}, NEW_YEAR),  # created_at
])
def test_purchase_time(changes, expected):
    [conversion] = convert("orders/paid", {**PAID, **changes})
    assert conversion.event.event_time == expected


@pytest.mark.parametrize(("topic", "payload"), [
    ("orders/paid", {**PAID, "processed_at": None, "updated_at": None, "created_at": None}),
    ("orders/paid", {**PAID, "id": None}),
    ("checkouts/create", changed("checkouts_create", created_at="2021-12-31T19:00:00", updated_at=None)),
    ("carts/create", changed("carts_create", token=None, id="")),
])
def test_payload_without_time_or_id_is_a_payload_error(topic, payload):
    with pytest.raises(PayloadError):
        convert(topic, payload)


@pytest.mark.parametrize(("changes", "options", "click"), [
    ({"note_attributes": [{"name": "kwai_click_id", "value": "A1"}], "landing_site": "/?click_id=L1"},
     ConversionOptions(), ("A1", "attribute")),
    ({"landing_site": "/?click_id=L1"}, ConversionOptions(), ("L1", "landing_url")),
    ({"landing_site": "/products/x?kclid=K%2F1"}, ConversionOptions(click_params=("kclid",)), ("K/1", "landing_url")),
    ({"landing_site": "/?utm_source=kwai"}, ConversionOptions(), (None, None)),
    ({"note_attributes": [{"name": "gift_note", "value": "kwai_click_id"}]}, ConversionOptions(), (None, None)),
])
def test_click_id_sources(changes, options, click):
    [conversion] = convert("orders/paid", {**PAID, **changes}, options)
    assert (conversion.event.click_id, conversion.click_source) == click


def test_cart_update_counts_items():
    payload = sample("carts_create")
    second = {**payload["line_items"][0], "product_id": 111, "quantity": 2, "line_price": "10.00", "title": "Socks",
              "line_price_set": _set(("10.00", "USD"), ("10.00", "USD"))}
    payload["line_items"].append(second)
    [conversion] = convert("carts/update", payload)
    event = conversion.event
    assert (event.idempotency_key, conversion.high_water) == ("cart:exampleCartId:EVENT_ADD_TO_CART:5", ("cart:exampleCartId", 5))
    assert (event.value, event.content_id, event.content_name, event.quantity) == (Decimal("69.97"), None, None, 5)
    assert convert("carts/update", changed("carts_create", line_items=[])) == []


def test_customers_create():
    payload = {"id": 706405506930370084, "email": "Bob@Example.com ", "phone": "+16136120707",
               "created_at": "2021-12-31T19:00:00-05:00", "updated_at": "2022-02-01T00:00:00Z"}
    [conversion] = convert("customers/create", payload)
    event = conversion.event
    assert (event.event_name, event.idempotency_key, event.event_time) == (
        "EVENT_COMPLETE_REGISTRATION", "customer:706405506930370084:EVENT_COMPLETE_REGISTRATION", NEW_YEAR)
    assert (event.value, event.contents, event.content_type) == (None, (), None)
    assert conversion.identifiers == {"customer_id": "706405506930370084", "email_sha256": sha("bob@example.com"),
                                      "phone_sha256": sha("16136120707")}
    assert "Bob@Example.com" not in repr(conversion) and "6136120707" not in repr(conversion)


def test_delivery_key_is_the_webhook_id():
    body = fixture_bytes("shopify/shopify_orders_create.json", shop=SHOP)
    headers = headers_for("shopify", "orders/create", shop=SHOP, secret=SECRET, body=body, delivery_id="b5-1")
    request = WebhookRequest.build(headers, body)
    assert shopify.delivery_key(request, shopify.parse(request)) == "b5-1"
