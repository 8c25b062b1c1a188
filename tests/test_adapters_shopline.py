"""Shopline: hex and base64 signatures, the SDK-derived samples as they are, derived
cases (the change named) and the exact Kwai wire body each case produces."""
from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from adapters import shopline
from adapters.values import ConversionOptions, PrivacyRequest, SignatureError, WebhookRequest
from kwai_bridge.kwai.events import Content
from tests.adapter_helpers import delivery, sha, wire
from tests.conftest import fixture_bytes
from tests.signing import headers_for, sign

SECRET = "shopline-app-secret"
SHOP = "shophub.myshopline.com"
ORDER_ID = "21050224312121887324667162"
PROCESSED = datetime(2023, 4, 12, 14, 59, 52, tzinfo=timezone.utc)  # 2023-04-12T22:59:52+08:00
SDK_SECRET = "LDLLJJLflja2039203flaflaLLFLE"
SDK_BODY = b'{"body_html":"BodyHtml","id":"32398389389389"}'
SDK_HEX = "edf64f4c46a9cb2c8aaa6c7034b77899aca1b63ad0c461901417a42b1cf139b0"

ORDERS = "shopline/shopline_orders_create.DERIVED_FROM_SDK.json"
CHECKOUTS = "shopline/shopline_checkouts_create.DERIVED_FROM_SDK.json"
CUSTOMER = "shopline/shopline_customers_update_docs_overview.json"


def sample(path: str) -> dict:
    return json.loads(fixture_bytes(path, shop=SHOP))


def changed(path: str, **changes) -> dict:
    payload = copy.deepcopy(sample(path))
    payload.update(changes)
    return payload


deliver = delivery(shopline, shop=SHOP, secret=SECRET)


def convert(topic, payload, options=ConversionOptions()):
    return deliver(topic, payload, options)[1]


# -- signatures ---------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "header"), [
    ("SDK vector, lower-case hex", SDK_HEX),
    ("upper-case hex", SDK_HEX.upper()),
    ("base64 of the same digest", base64.b64encode(bytes.fromhex(SDK_HEX)).decode()),
    ("surrounding spaces", f" {SDK_HEX} "),
])
def test_sdk_vector_in_every_accepted_form(case, header):
    shopline.verify(WebhookRequest.build({"X-Shopline-Hmac-Sha256": header}, SDK_BODY), secrets=[SDK_SECRET])


@pytest.mark.parametrize("header", [
    SDK_HEX[:-1] + "1",  # one digit off
    SDK_HEX[:32],  # truncated
    base64.urlsafe_b64encode(bytes.fromhex(SDK_HEX)).decode().rstrip("="),  # unpadded url-safe
    "sha256=" + SDK_HEX,
])
def test_near_misses_are_refused(header):
    with pytest.raises(SignatureError):
        shopline.verify(WebhookRequest.build({"X-Shopline-Hmac-Sha256": header}, SDK_BODY), secrets=[SDK_SECRET])


@pytest.mark.parametrize("encoding", ["hex", "HEX", "base64"])
def test_signing_helper_in_each_encoding(encoding):
    body = fixture_bytes(ORDERS, shop=SHOP)
    shopline.verify(WebhookRequest.build(sign("shopline", SECRET, body, encoding=encoding), body), secrets=[SECRET])


# -- the samples as they are --------------------------------------------------------------
def test_orders_create_sample():
    notification, conversions = deliver("orders/create", fixture_bytes(ORDERS, shop=SHOP))
    assert (notification.shop, notification.kind, notification.delivery_id is not None) == (SHOP, "conversion", True)
    [conversion] = conversions  # financial_status unpaid: no purchase
    event = conversion.event
    assert (event.event_name, event.idempotency_key) == ("EVENT_PLACE_ORDER", f"order:{ORDER_ID}:EVENT_PLACE_ORDER")
    # every *_set amount is blank in this sample: current_total_price is the first real amount
    assert (event.value, event.currency, event.event_time) == (Decimal("8.00"), "USD", PROCESSED)
    assert event.contents == (Content("16056761559984840457934011", 1, Decimal("8.00")),)
    assert (event.content_id, event.content_name, event.quantity) == ("16056761559984840457934011", "Beautiful skirt", 1)
    assert (event.click_id, conversion.click_source, conversion.skip_reason) == (None, None, None)
    assert conversion.identifiers == {
        "order_id": ORDER_ID, "checkout_token": "c2c4a58186b9d96395d7e6b5c2969577",
        "cart_token": "c2c4a58186b9d96395d7e6b5c2969577", "customer_id": "4201057495",
        "email_sha256": sha("test1001@gmail.com"), "phone_sha256": sha("19872334222")}
    assert "test1001@Gmail.com" not in repr(conversion)


@pytest.mark.parametrize(("options", "content_id", "value"), [
    (ConversionOptions(content_id="variant"), "18056761559987524812644011", Decimal("8.00")),
    (ConversionOptions(content_id="sku"), "18056761559987524812644011", Decimal("8.00")),
    (ConversionOptions(value="subtotal"), "16056761559984840457934011", Decimal("8.00")),  # current_subtotal_price
])
def test_orders_sample_options(options, content_id, value):
    [conversion] = convert("orders/create", fixture_bytes(ORDERS, shop=SHOP), options)
    assert (conversion.event.content_id, conversion.event.value) == (content_id, value)


def test_all_amounts_blank_gives_no_value_and_says_why():
    payload = changed(ORDERS, current_total_price="", total_price="")
    [conversion] = convert("orders/create", payload)
    assert (conversion.event.value, conversion.event.currency) == (None, None)
    assert conversion.value_note


def test_checkouts_create_sample():
    [conversion] = convert("checkouts/create", fixture_bytes(CHECKOUTS, shop=SHOP))
    event = conversion.event
    token = "c2c4a7b1e182e894f6e194a99489f870"
    assert (event.event_name, event.idempotency_key) == ("EVENT_INITIATED_CHECKOUT", f"checkout:{token}:EVENT_INITIATED_CHECKOUT")
    assert (event.value, event.currency) == (Decimal("0.00"), "USD")  # total_price 0.0 (a number)
    assert event.event_time == datetime(2024, 8, 30, 18, 20, 26, tzinfo=timezone.utc)
    assert event.contents == (Content("16060214426601453066501487", 0, Decimal("8.00")),)
    assert (event.content_id, event.content_name, event.quantity) == ("16060214426601453066501487", f"#{token}", 0)
    assert (event.click_id, conversion.click_source) == (None, None)  # its one note attribute is blank
    assert conversion.identifiers == {"checkout_token": token, "cart_token": "c4a54360f2b2460fbb6973bb80406111",
                                      "customer_id": "4201057495", "email_sha256": sha("email@example.cpm")}
    [subtotal] = convert("checkouts/create", fixture_bytes(CHECKOUTS, shop=SHOP), ConversionOptions(value="subtotal"))
    assert subtotal.event.value == Decimal("8.00")  # sub_total_price, Shopline's spelling


@pytest.mark.parametrize(("topic", "path"), [
    ("customers/update", CUSTOMER),  # not a conversion topic
    ("order_attribution/create", "shopline/shopline_order_attribution_info_rest.json"),
    ("orders/updated", ORDERS),  # unpaid
    ("shop/redact", CUSTOMER),  # Shopify's privacy topic means nothing here
    ("customers/data_request", CUSTOMER),
])
def test_samples_that_give_nothing(topic, path):
    notification, conversions = deliver(topic, fixture_bytes(path, shop=SHOP))
    assert (notification.kind, conversions) == ("conversion", [])


def test_customer_sample_as_customers_create():
    [conversion] = convert("customers/create", fixture_bytes(CUSTOMER, shop=SHOP))
    event = conversion.event
    assert (event.event_name, event.idempotency_key) == (
        "EVENT_COMPLETE_REGISTRATION", "customer:421475190:EVENT_COMPLETE_REGISTRATION")
    assert event.event_time == datetime(2023, 5, 10, 9, 0, 1, tzinfo=timezone.utc)
    assert (event.value, event.currency, conversion.value_note) == (None, None, None)  # no value by nature
    assert conversion.identifiers == {"customer_id": "421475190", "email_sha256": sha("test1@joyy.com")}


# -- derived cases and the exact wire body -------------------------------------------------
WIRE_BASE = {"access_token": "tok", "pixelId": "px", "testFlag": False, "trackFlag": False,
             "is_attributed": 1, "mmpcode": "PL", "pixelSdkVersion": "9.9.9", "third_party": "shopline",
             "currency": "USD", "value": "8.00"}
ORDER_PROPS = {"content_type": "product", "contents": [{"id": "16056761559984840457934011", "quantity": 1,
                                                        "price": Decimal("8.00")}],
               "content_id": "16056761559984840457934011", "content_name": "Beautiful skirt", "quantity": 1}
PROCESSED_MS = 1681311592000
PAID_DETAILS = [{"pay_status": "paid", "processed_at": "2023-04-12T23:05:00+08:00", "pay_amount": 8.0}]
WIRE_CASES = [
    ("orders/create paid at once, kwai_click_id note attribute, payment time from payment_details", "orders/create",
     changed(ORDERS, financial_status="paid", payment_details=PAID_DETAILS,
             note_attributes=[{"name": "kwai_click_id", "value": "SL+a/b="}]),
     [({**WIRE_BASE, "clickid": "SL+a/b=", "event_name": "EVENT_PLACE_ORDER"}, {**ORDER_PROPS, "event_timestamp": PROCESSED_MS}),
      ({**WIRE_BASE, "clickid": "SL+a/b=", "event_name": "EVENT_PURCHASE"}, {**ORDER_PROPS, "event_timestamp": 1681311900000})]),
    ("orders/paid, click id in landing_site", "orders/paid",
     changed(ORDERS, landing_site="https://shophub.myshopline.com/products/x?click_id=SL%2B1"),
     [({**WIRE_BASE, "clickid": "SL+1", "event_name": "EVENT_PURCHASE"}, {**ORDER_PROPS, "event_timestamp": PROCESSED_MS})]),
    ("orders/updated once paid", "orders/updated",
     changed(ORDERS, financial_status="paid", landing_site="/?click_id=U2"),
     [({**WIRE_BASE, "clickid": "U2", "event_name": "EVENT_PURCHASE"}, {**ORDER_PROPS, "event_timestamp": PROCESSED_MS})]),
    ("checkouts/create with kwai_click_id note attribute", "checkouts/create",
     changed(CHECKOUTS, note_attributes=[{"name": "kwai_click_id", "value": "CK"}]),
     [({**WIRE_BASE, "clickid": "CK", "event_name": "EVENT_INITIATED_CHECKOUT", "value": "0.00"},
       {"event_timestamp": 1725042026000, "content_type": "product", "quantity": 0,
        "contents": [{"id": "16060214426601453066501487", "quantity": 0, "price": Decimal("8.00")}],
        "content_id": "16060214426601453066501487", "content_name": "#c2c4a7b1e182e894f6e194a99489f870"})]),
    ("carts/create (SDK shape: numbers, currency_code) with a cart attribute", "carts/create",
     {"id": "cart-1", "token": "cart-1", "currency_code": "BRL", "total_amount": 59.8,
      "attributes": {"kwai_click_id": "CA1"}, "created_at": "2024-08-31T02:00:00+08:00",
      "updated_at": "2024-08-31T02:20:26+08:00",
      "line_items": [{"id": "1", "product_id": "1606", "variant_id": "1806", "sku": "S1", "title": "Dress",
                      "quantity": 2, "price": 29.9}]},
     [({**WIRE_BASE, "clickid": "CA1", "event_name": "EVENT_ADD_TO_CART", "currency": "BRL", "value": "59.80"},
       {"event_timestamp": 1725042026000, "content_type": "product", "quantity": 2, "content_id": "1606",
        "content_name": "Dress", "contents": [{"id": "1606", "quantity": 2, "price": Decimal("29.90")}]})]),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), [c[1:] for c in WIRE_CASES], ids=[c[0] for c in WIRE_CASES])
def test_wire_body(topic, payload, expected):
    assert [wire(c.event) for c in convert(topic, payload)] == expected


def test_cart_high_water():
    [conversion] = convert("carts/update", WIRE_CASES[-1][2])
    assert conversion.high_water == ("cart:cart-1", 2)
    assert conversion.event.idempotency_key == "cart:cart-1:EVENT_ADD_TO_CART:2"
    assert conversion.click_source == "attribute"


# -- privacy --------------------------------------------------------------------------------
def test_customers_redact():
    body = {"customer": {"email": "Tom@Example.com", "id": "4201057495", "phone": "13100000000", "area_code": "+86"},
            "orders_to_redact": [ORDER_ID], "shop_domain": SHOP, "shop_id": "1610418123456",
            "update_time": "2024-01-01T00:00:00+08:00"}
    notification, conversions = deliver("customers/redact", body)
    assert (notification.kind, conversions) == ("privacy", [])
    assert shopline.privacy_request(notification) == PrivacyRequest(
        action="redact_customer", customer_id="4201057495", email_sha256=sha("tom@example.com"),
        phone_sha256=sha("8613100000000"), order_ids=(ORDER_ID,))


def test_merchants_redact():
    body = {"store_id": "1610418123456", "store_domain": SHOP, "update_time": "2024-01-01T00:00:00+08:00"}
    notification, conversions = deliver("merchants/redact", body)
    assert (notification.kind, conversions) == ("privacy", [])
    assert shopline.privacy_request(notification) == PrivacyRequest(action="redact_shop")


def test_delivery_key_is_the_webhook_id():
    body = fixture_bytes(ORDERS, shop=SHOP)
    request = WebhookRequest.build(
        headers_for("shopline", "orders/create", shop=SHOP, secret=SECRET, body=body, delivery_id="b54557e48a5fbf7d70bcd043"),
        body)
    assert shopline.delivery_key(request, shopline.parse(request)) == "b54557e48a5fbf7d70bcd043"
