"""WooCommerce: the REST order sample as it is, what "paid" means, the ping, derived cases
(the change named) and the exact Kwai wire body each case produces."""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from adapters import woocommerce
from adapters.values import ConversionOptions, PayloadError, SignatureError, WebhookRequest
from kwai_bridge.kwai.events import Content
from tests.adapter_helpers import delivery, sha, wire
from tests.conftest import fixture_bytes
from tests.signing import headers_for, ping_headers, sign

SECRET = "woo-secret"
SITE = "https://shop.example/"
ORDER = "woocommerce/woocommerce_order_created.json"
CREATED = datetime(2017, 3, 22, 19, 28, 2, tzinfo=timezone.utc)  # date_created_gmt
PAID_AT = datetime(2017, 3, 22, 19, 28, 8, tzinfo=timezone.utc)  # date_paid_gmt (UTC, no offset)
CREATED_MS, PAID_MS = 1490210882000, 1490210888000


def sample() -> dict:
    return json.loads(fixture_bytes(ORDER))


def changed(**changes) -> dict:
    payload = copy.deepcopy(sample())
    payload.update(changes)
    return payload


def with_meta(*pairs, **changes) -> dict:
    payload = changed(**changes)
    payload["meta_data"] += [{"id": 20000 + i, "key": k, "value": v} for i, (k, v) in enumerate(pairs)]
    return payload


deliver = delivery(woocommerce, shop=SITE, secret=SECRET)


def convert(topic, payload, options=ConversionOptions()):
    return deliver(topic, payload, options)[1]


# -- signatures -----------------------------------------------------------------------------
def test_published_test_vector():
    body = b'{"id":727,"status":"processing","total":"29.35"}'
    request = WebhookRequest.build({"X-WC-Webhook-Signature": "wLPUZX5J+dqZQaRmzkWqaZHzfx7840CYGlzyzncjmpk="}, body)
    woocommerce.verify(request, secrets=["test-woo-webhook-secret"])
    with pytest.raises(SignatureError):
        woocommerce.verify(request, secrets=["test-woo-webhook-secre"])


def test_signature_is_over_the_raw_bytes_with_escaped_slashes():
    body = b'{"id":727,"status":"processing","_links":{"self":[{"href":"https:\\/\\/example.com\\/wp-json"}]}}'
    headers = sign("woocommerce", SECRET, body)
    woocommerce.verify(WebhookRequest.build(headers, body), secrets=[SECRET])
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert reserialised != body
    with pytest.raises(SignatureError):
        woocommerce.verify(WebhookRequest.build(headers, reserialised), secrets=[SECRET])


# -- the sample as it is --------------------------------------------------------------------
def test_order_sample_is_placed_and_paid():
    notification, conversions = deliver("order.created", fixture_bytes(ORDER))
    assert (notification.shop, notification.kind) == (SITE, "conversion")
    assert [(c.event.event_name, c.event.idempotency_key, c.event.event_time) for c in conversions] == [
        ("EVENT_PLACE_ORDER", "order:727:EVENT_PLACE_ORDER", CREATED),
        ("EVENT_PURCHASE", "order:727:EVENT_PURCHASE", PAID_AT),
    ]
    for conversion in conversions:
        event = conversion.event
        assert (event.value, event.currency, event.click_id, conversion.click_source) == (Decimal("29.35"), "USD", None, None)
        assert event.contents == (Content("93", 2, Decimal("3.00")), Content("22", 1, Decimal("12.00")))
        assert (event.content_id, event.content_name, event.quantity, event.content_type) == (None, "#727", 3, "product")
        assert conversion.identifiers == {"order_id": "727", "order_key": "wc_order_58d2d042d1d",
                                          "email_sha256": sha("john.doe@example.com"), "phone_sha256": sha("5555555555")}
        assert "john.doe@example.com" not in repr(conversion)


@pytest.mark.parametrize(("options", "ids", "value"), [
    (ConversionOptions(content_id="variant"), ["93", "23"], Decimal("29.35")),  # simple product: variation_id 0
    (ConversionOptions(content_id="sku"), ["93", "Bar3"], Decimal("29.35")),  # blank sku: product id
    (ConversionOptions(value="subtotal"), ["93", "22"], Decimal("18.00")),  # line subtotals
])
def test_order_sample_options(options, ids, value):
    conversions = convert("order.created", fixture_bytes(ORDER), options)
    assert [([c.id for c in x.event.contents], x.event.value) for x in conversions] == [(ids, value)] * 2


def test_one_product_names_it_unescaped():
    payload = changed(line_items=[sample()["line_items"][1]])
    [placed, _] = convert("order.created", payload)
    assert (placed.event.content_id, placed.event.content_name) == ("22", "Ship Your Idea \u2013 Color: Black, Size: M Test")


def test_action_topic_sample_is_ignored():
    body = fixture_bytes("woocommerce/woocommerce_action_woocommerce_add_to_cart.DERIVED_FROM_CODE.json")
    notification, conversions = deliver("action.woocommerce_add_to_cart", body)
    assert (notification.topic, conversions) == ("action.woocommerce_add_to_cart", [])


# -- what "paid" means ----------------------------------------------------------------------
PAID_CASES = [
    # (case, changes, order.created gives, order.updated gives)
    ("processing with date_paid (the sample)", {}, ["EVENT_PLACE_ORDER", "EVENT_PURCHASE"], ["EVENT_PURCHASE"]),
    ("completed with date_paid", {"status": "completed"}, ["EVENT_PLACE_ORDER", "EVENT_PURCHASE"], ["EVENT_PURCHASE"]),
    ("only date_paid_gmt", {"date_paid": None}, ["EVENT_PLACE_ORDER", "EVENT_PURCHASE"], ["EVENT_PURCHASE"]),
    ("COD: processing, date_paid null", {"date_paid": None, "date_paid_gmt": None, "payment_method": "cod"},
     ["EVENT_PLACE_ORDER"], []),
    ("pending", {"status": "pending", "date_paid": None, "date_paid_gmt": None}, ["EVENT_PLACE_ORDER"], []),
    ("on-hold bank transfer", {"status": "on-hold", "date_paid": None, "date_paid_gmt": None}, ["EVENT_PLACE_ORDER"], []),
    ("failed, even with a payment date", {"status": "failed"}, ["EVENT_PLACE_ORDER"], []),
    ("cancelled, even with a payment date", {"status": "cancelled"}, ["EVENT_PLACE_ORDER"], []),
    ("checkout-draft", {"status": "checkout-draft", "date_paid": None, "date_paid_gmt": None}, [], []),
    ("checkout-draft with a payment date", {"status": "checkout-draft"}, [], []),
]


@pytest.mark.parametrize(("changes", "created", "updated"), [c[1:] for c in PAID_CASES], ids=[c[0] for c in PAID_CASES])
def test_paid_means_payment_date_and_processing_or_completed(changes, created, updated):
    assert [c.event.event_name for c in convert("order.created", changed(**changes))] == created
    # (a cancelled order's update withdraws its events: adapters.later, tests/test_later_stages.py)
    assert [c.event.event_name for c in convert("order.updated", changed(**changes)) if not c.withdraw] == updated


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, PAID_AT),
    ({"date_paid_gmt": None}, datetime(2017, 3, 22, 19, 28, 8, tzinfo=timezone.utc)),  # date_modified_gmt
    ({"date_paid_gmt": "2017-03-23T01:00:00+00:00"}, datetime(2017, 3, 23, 1, tzinfo=timezone.utc)),
    ({"date_paid_gmt": "2017-03-23T01:00:00Z"}, datetime(2017, 3, 23, 1, tzinfo=timezone.utc)),
])
def test_purchase_time(changes, expected):
    [purchase] = convert("order.updated", changed(**changes))
    assert purchase.event.event_time == expected


def test_order_without_a_utc_time_is_a_payload_error():
    payload = changed(date_created_gmt=None)  # the site-local date_created has no offset: unusable
    with pytest.raises(PayloadError):
        convert("order.created", payload)


# -- derived cases and the exact wire body ----------------------------------------------------
WIRE_BASE = {"access_token": "tok", "pixelId": "px", "testFlag": False, "trackFlag": False, "is_attributed": 1,
             "mmpcode": "PL", "pixelSdkVersion": "9.9.9", "third_party": "woocommerce", "currency": "USD", "value": "29.35"}
PROPS = {"content_type": "product", "content_name": "#727", "quantity": 3,
         "contents": [{"id": "93", "quantity": 2, "price": Decimal("3.00")}, {"id": "22", "quantity": 1, "price": Decimal("12.00")}]}
SESSION = "_wc_order_attribution_session_entry"
WIRE_CASES = [
    ("order.updated paid, click id in the attribution session entry", "order.updated",
     with_meta((SESSION, "https://shop.example/?utm_source=kwai&click_id=WOO%2Babc"), ("_wc_order_attribution_source_type", "utm")),
     [({**WIRE_BASE, "clickid": "WOO+abc", "event_name": "EVENT_PURCHASE"}, {**PROPS, "event_timestamp": PAID_MS})]),
    ("order.created paid, _kwai_click_id order meta beats the session entry", "order.created",
     with_meta((SESSION, "https://shop.example/?click_id=FROM_URL"), ("_kwai_click_id", " META+1 ")),
     [({**WIRE_BASE, "clickid": "META+1", "event_name": "EVENT_PLACE_ORDER"}, {**PROPS, "event_timestamp": CREATED_MS}),
      ({**WIRE_BASE, "clickid": "META+1", "event_name": "EVENT_PURCHASE"}, {**PROPS, "event_timestamp": PAID_MS})]),
    ("a Brazilian order in BRL", "order.updated",
     with_meta(("_kwai_click_id", "BR1"), currency="BRL"),
     [({**WIRE_BASE, "clickid": "BR1", "event_name": "EVENT_PURCHASE", "currency": "BRL"}, {**PROPS, "event_timestamp": PAID_MS})]),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), [c[1:] for c in WIRE_CASES], ids=[c[0] for c in WIRE_CASES])
def test_wire_body(topic, payload, expected):
    assert [wire(c.event) for c in convert(topic, payload)] == expected


@pytest.mark.parametrize(("payload", "source"), [
    (with_meta((SESSION, "https://shop.example/?click_id=Uv/1")), "landing_url"),
    (with_meta(("_kwai_click_id", "M")), "order_meta"),
    (with_meta((SESSION, "https://shop.example/?utm_source=kwai")), None),
    (with_meta((SESSION, "")), None),
    (sample(), None),
])
def test_click_source(payload, source):
    assert {c.click_source for c in convert("order.updated", payload)} == {source}


# WordPress keeps the session entry with every %xx removed: "9X8Yq/Qt2g==" sent as
# 9X8Yq%2FQt2g%3D%3D arrives as 9X8YqQt2g, which still looks like a click id.
@pytest.mark.parametrize(("entry", "click", "noted"), [
    ("https://shop.example/?click_id=9X8YqQt2g", None, True),  # may have lost characters: not sent
    ("https://shop.example/?click_id=9X8Yq/Qt2g==", "9X8Yq/Qt2g==", False),  # kept decoded: whole
    ("https://shop.example/?utm_campaign=Black Friday&click_id=Lw2HvYVkoj1MyzQwwNX4dg",
     "Lw2HvYVkoj1MyzQwwNX4dg", False),  # a space shows the entry was decoded
])
def test_a_click_id_wordpress_may_have_corrupted_is_not_used(entry, click, noted):
    conversions = convert("order.updated", with_meta((SESSION, entry)))
    assert {(c.event.click_id, c.click_source) for c in conversions} == {(click, "landing_url" if click else None)}
    notes = {c.click_note for c in conversions}
    if noted:
        (note,) = notes
        assert note.startswith("the click id in _wc_order_attribution_session_entry was not used: ")
        assert "9X8Y" not in note  # the note says why, never the id
    else:
        assert notes == {None}


def test_order_meta_beats_a_doubtful_session_entry_without_a_note():
    payload = with_meta((SESSION, "https://shop.example/?click_id=9X8YqQt2g"), ("_kwai_click_id", "Meta+1"))
    assert {(c.event.click_id, c.click_source, c.click_note) for c in convert("order.updated", payload)} == {
        ("Meta+1", "order_meta", None)}


@pytest.mark.parametrize(("options", "value", "currency"), [
    (ConversionOptions(), None, None),
    (ConversionOptions(currency_rates={"EUR": Decimal("6.1234")}, report_currency="BRL"), Decimal("179.72"), "BRL"),
])
def test_unaccepted_currency(options, value, currency):
    [purchase] = convert("order.updated", changed(currency="EUR"), options)
    assert (purchase.event.value, purchase.event.currency) == (value, currency)
    assert (purchase.value_note is None) == (value is not None)


def test_customer_created():
    payload = {"id": 25, "email": "John.Doe@example.com", "date_created": "2017-03-21T16:29:58",
               "date_created_gmt": "2017-03-21T19:29:58", "billing": {"phone": "(555) 555-5555"}}
    [conversion] = convert("customer.created", payload)
    event = conversion.event
    assert (event.event_name, event.idempotency_key, event.event_time) == (
        "EVENT_COMPLETE_REGISTRATION", "customer:25:EVENT_COMPLETE_REGISTRATION",
        datetime(2017, 3, 21, 19, 29, 58, tzinfo=timezone.utc))
    assert conversion.identifiers == {"customer_id": "25", "email_sha256": sha("john.doe@example.com"),
                                      "phone_sha256": sha("5555555555")}


# -- the ping and the delivery key --------------------------------------------------------------
def test_ping_is_recognised_and_never_verified():
    request = WebhookRequest.build(ping_headers(), fixture_bytes("woocommerce/woocommerce_ping_body.DERIVED_FROM_CODE.txt"))
    assert woocommerce.is_ping(request)
    notification = woocommerce.parse(request)
    assert (notification.kind, notification.topic, notification.payload) == ("ping", "ping", {"webhook_id": "123"})
    assert woocommerce.to_conversions(notification, options=ConversionOptions()) == []
    with pytest.raises(SignatureError):  # verify stays closed; the caller answers a ping before verifying
        woocommerce.verify(request, secrets=[SECRET])


@pytest.mark.parametrize(("headers", "body"), [
    ({**ping_headers(), **sign("woocommerce", SECRET, b"webhook_id=1")}, b"webhook_id=1"),
    ({**ping_headers(), "X-WC-Webhook-Topic": "order.created"}, b"webhook_id=1"),
    (ping_headers(), b"webhook_id=1a"),
    (ping_headers(), b"webhook_id="),
    (ping_headers(), b"webhook_id=1&x=2"),
    (ping_headers(), b'{"webhook_id": 1}'),
])
def test_not_a_ping(headers, body):
    assert not woocommerce.is_ping(WebhookRequest.build(headers, body))


def test_delivery_key_ignores_the_per_attempt_delivery_id():
    body = fixture_bytes(ORDER)
    keys = []
    for topic, delivery_id in [("order.created", "attempt-1"), ("order.created", "attempt-2"), ("order.updated", "attempt-3")]:
        request = WebhookRequest.build(headers_for("woocommerce", topic, shop=SITE, secret=SECRET, body=body,
                                                   delivery_id=delivery_id), body)
        notification = woocommerce.parse(request)
        assert notification.delivery_id == delivery_id
        keys.append(woocommerce.delivery_key(request, notification))
    assert keys[0] == keys[1] == hashlib.sha256(b"order.created\n" + body).hexdigest()
    assert keys[2] != keys[0]
