"""Every adapter through the same cases: signatures fail closed, bodies are checked,
unknown topics are harmless, and no input makes verify/parse/convert raise anything but
an AdapterError."""
from __future__ import annotations

import hashlib
import inspect
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapters
from adapters.values import (
    AdapterError, Conversion, ConversionOptions, Notification, PayloadError, SignatureError, WebhookRequest,
)
from kwai_bridge.kwai.events import CURRENCIES, EVENT_NAMES, KwaiEvent
from tests.conftest import fixture_bytes
from tests.poison import BASES as TOPIC_BODIES
from tests.serving import SHOPS as POISON_SHOPS
from tests.signing import SIGNATURE_HEADERS, headers_for, sign

SECRET = "s3cret-for-tests"
SHOPS = {"shopify": "demo.myshopify.com", "shopline": "demo.myshopline.com", "woocommerce": "https://shop.example/"}
SAMPLES = {
    "shopify": ("orders/create", "shopify/shopify_orders_create.json"),
    "shopline": ("orders/create", "shopline/shopline_orders_create.DERIVED_FROM_SDK.json"),
    "woocommerce": ("order.created", "woocommerce/woocommerce_order_created.json"),
}
PLATFORMS = sorted(adapters.REGISTRY)
PUBLIC = ("NAME", "SHOP_HEADER", "TOPICS", "BODY_DECIDES_TOPICS", "KEPT_HEADERS", "APP_WIDE_SECRET",
          "PIXEL_SANDBOX", "verify", "parse", "peek", "to_conversions", "delivery_key", "is_ping", "privacy_request",
          "normalise_shop_setting")


def signed(platform, *, body=None, topic=None, secret=SECRET, delivery_id=None):
    default_topic, path = SAMPLES[platform]
    body = fixture_bytes(path, shop=SHOPS[platform]) if body is None else body
    headers = headers_for(platform, topic or default_topic, shop=SHOPS[platform], secret=secret,
                          body=body, delivery_id=delivery_id)
    return WebhookRequest.build(headers, body)


def test_the_adapter_protocol_names_the_public_names():
    protocol = vars(adapters.Adapter)
    methods = {name for name, value in protocol.items() if callable(value) and not name.startswith("_")}
    named = set(protocol["__annotations__"]) | methods
    assert named == set(PUBLIC)


def test_registry_is_the_three_platforms():
    assert adapters.REGISTRY == {"shopify": adapters.shopify, "shopline": adapters.shopline,
                                 "woocommerce": adapters.woocommerce}
    assert adapters.get("shopline") is adapters.shopline
    assert all(isinstance(module, adapters.Adapter) for module in adapters.REGISTRY.values())
    with pytest.raises(KeyError, match="unknown platform 'magento'"):
        adapters.get("magento")


@pytest.mark.parametrize("platform", PLATFORMS)
def test_same_public_names(platform):
    module = adapters.REGISTRY[platform]
    for name in PUBLIC:
        assert hasattr(module, name), f"{platform} lacks {name}"
    assert module.NAME == platform
    assert module.SHOP_HEADER == module.SHOP_HEADER.lower()
    assert module.TOPICS and set(module.TOPICS.values()) <= EVENT_NAMES
    assert list(inspect.signature(module.verify).parameters) == ["request", "secrets"]
    assert inspect.signature(module.verify).parameters["secrets"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(module.to_conversions).parameters["options"].kind is inspect.Parameter.KEYWORD_ONLY


FACTS = {  # platform: (APP_WIDE_SECRET, PIXEL_SANDBOX)
    "shopify": (True, True),
    "shopline": (True, False),
    "woocommerce": (False, False),
}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_platform_facts(platform):
    module = adapters.REGISTRY[platform]
    assert (module.APP_WIDE_SECRET, module.PIXEL_SANDBOX) == FACTS[platform]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_kept_headers_name_the_delivery_but_never_the_signature(platform):
    kept = adapters.REGISTRY[platform].KEPT_HEADERS
    assert isinstance(kept, tuple) and all(h == h.lower() for h in kept)
    assert SIGNATURE_HEADERS[platform].lower() not in kept
    request = signed(platform)
    again = WebhookRequest({h: v for h, v in request.headers.items() if h in kept}, request.body)
    parse = adapters.REGISTRY[platform].parse
    # what reprocessing needs (WooCommerce's delivery id is new on every attempt: not kept)
    assert {**vars(parse(again)), "delivery_id": None} == {**vars(parse(request)), "delivery_id": None}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_platform_is_a_third_party_the_event_model_accepts(platform):
    KwaiEvent(event_name="EVENT_PURCHASE", event_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
              third_party=platform, idempotency_key="order:1:EVENT_PURCHASE", click_id="c").validate()


SHOP_SETTINGS = [
    ("shopify", " Acme.MyShopify.com/ ", "acme.myshopify.com"),
    ("shopify", "https://acme.myshopify.com", "acme.myshopify.com"),
    ("shopline", "acme.myshopline.com", "acme.myshopline.com"),
    ("woocommerce", "Shop.Example.com/", "https://shop.example.com"),
    ("woocommerce", "http://shop.example.com/store/", "http://shop.example.com/store"),
]
BAD_SHOP_SETTINGS = [
    ("shopify", "acme.myshopify.com/admin", "must be the shop's domain, such as acme.myshopify.com"),
    ("shopline", "https://", "must be the shop's domain, such as acme.myshopline.com"),
    ("shopify", "acme shop.com", "must be the shop's domain"),
    ("woocommerce", "https:///shop", "must be the site URL, such as https://shop.example.com"),
    ("woocommerce", "shop example.com", "must be the site URL"),
]


@pytest.mark.parametrize("platform, value, expected", SHOP_SETTINGS)
def test_shop_setting_is_normalised_as_the_store_is_matched(platform, value, expected):
    assert adapters.REGISTRY[platform].normalise_shop_setting(value) == expected


@pytest.mark.parametrize("platform, value, message", BAD_SHOP_SETTINGS)
def test_a_shop_setting_of_the_wrong_form_says_what_is_wanted(platform, value, message):
    with pytest.raises(ValueError, match=message):
        adapters.REGISTRY[platform].normalise_shop_setting(value)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_valid_signature_is_accepted_and_parsed(platform):
    request = signed(platform)
    adapters.REGISTRY[platform].verify(request, secrets=[SECRET])
    notification = adapters.REGISTRY[platform].parse(request)
    assert (notification.platform, notification.topic, notification.kind) == (platform, SAMPLES[platform][0], "conversion")
    assert notification.shop == SHOPS[platform]
    assert notification.payload == json.loads(fixture_bytes(SAMPLES[platform][1], shop=SHOPS[platform]))
    assert adapters.REGISTRY[platform].is_ping(request) is False


def _tamper(body: bytes) -> bytes:
    i = body.index(b"1")  # every sample has a digit somewhere in a value
    return body[:i] + b"2" + body[i + 1:]


FAILURES = [
    # (case, how to damage the request, secrets)
    ("tampered body, one byte", lambda p, r: WebhookRequest(r.headers, _tamper(r.body)), [SECRET]),
    ("missing signature header", lambda p, r: WebhookRequest(
        {k: v for k, v in r.headers.items() if k != SIGNATURE_HEADERS[p].lower()}, r.body), [SECRET]),
    ("blank signature header", lambda p, r: WebhookRequest(
        {**r.headers, SIGNATURE_HEADERS[p].lower(): "  "}, r.body), [SECRET]),
    ("no secret configured", lambda p, r: r, []),
    ("empty-string secret", lambda p, r: r, [""]),
    ("empty secret beside a good one", lambda p, r: r, [SECRET, ""]),
    ("wrong secret", lambda p, r: r, ["another-secret"]),
    ("signature of another body", lambda p, r: WebhookRequest(
        {**r.headers, **{k.lower(): v for k, v in sign(p, SECRET, b"{}").items()}}, r.body), [SECRET]),
]


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize(("damage", "secrets"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES])
def test_verify_fails_closed(platform, damage, secrets):
    request = damage(platform, signed(platform))
    with pytest.raises(SignatureError) as raised:
        adapters.REGISTRY[platform].verify(request, secrets=secrets)
    assert raised.value.status_code == 401
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("signed_with", ["old-secret", "new-secret"])
def test_any_secret_of_a_rotation_is_accepted(platform, signed_with):
    request = signed(platform, secret=signed_with)
    adapters.REGISTRY[platform].verify(request, secrets=["old-secret", "new-secret"])


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("body", [b"not json", b"", b"[1, 2]", b'"text"', b"null", b'{"a": NaN}', b"\xff\xfe{",
                                  b'{"a": "\xff"}', b"[" * 100_000 + b"]" * 100_000],
                         ids=["text", "empty", "array", "string", "null", "nan", "bad utf-8",
                              "invalid utf-8 in a string", "too deep"])
def test_signed_body_that_is_not_a_json_object_is_a_payload_error(platform, body):
    request = signed(platform, body=body)
    adapters.REGISTRY[platform].verify(request, secrets=[SECRET])  # the signature is right
    with pytest.raises(PayloadError) as raised:
        adapters.REGISTRY[platform].parse(request)
    assert raised.value.status_code == 400


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_signed_body_with_a_byte_order_mark_is_parsed(platform):
    plain = adapters.REGISTRY[platform].parse(signed(platform))
    marked = signed(platform, body=b"\xef\xbb\xbf" + signed(platform).body)
    assert adapters.REGISTRY[platform].parse(marked).payload == plain.payload


@pytest.mark.parametrize("platform", PLATFORMS)
# A lone surrogate can be neither stored nor hashed: it is read as U+FFFD, as a UTF-8
# reader reads a broken sequence.
@pytest.mark.parametrize("text, value", [(b'"\\ud800x"', "\ufffdx"), (b'"\\udfff\\ud83d\\ude00"', "\ufffd\U0001f600"),
                                         (b"1e400", float("inf"))],
                         ids=["lone surrogate", "lone low surrogate, then a pair", "beyond a double"])
def test_what_the_fast_parser_refuses_is_still_read(platform, text, value):
    body = signed(platform).body.rstrip()
    request = signed(platform, body=body[:-1] + b', "kwai_extra": ' + text + b"}")
    assert adapters.REGISTRY[platform].parse(request).payload["kwai_extra"] == value


@pytest.mark.parametrize("platform,topic", sorted(TOPIC_BODIES))
def test_peek_tells_what_parse_tells_but_the_payload(platform, topic):
    """The request path of worker conversion peeks and keys the delivery by it: what it
    stores (topic, kind, delivery key) must be what parsing the body gives."""
    adapter = adapters.REGISTRY[platform]
    body = json.dumps(TOPIC_BODIES[platform, topic]).encode()
    request = WebhookRequest.build(headers_for(platform, topic, shop=POISON_SHOPS[platform], secret=SECRET, body=body,
                                               delivery_id="delivery-7"), body)
    peeked, parsed = adapter.peek(request), adapter.parse(request)
    assert peeked == Notification(**{**vars(parsed), "payload": {}})
    assert peeked.kind == ("privacy" if "redact" in topic or "data_request" in topic else "conversion")
    assert adapter.delivery_key(request, peeked) == adapter.delivery_key(request, parsed)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_peek_reads_no_body(platform):
    request = signed(platform)
    request = WebhookRequest(request.headers, b"\xff not JSON")
    assert adapters.REGISTRY[platform].peek(request).payload == {}
    with pytest.raises(PayloadError):
        adapters.REGISTRY[platform].parse(request)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("read", ["parse", "peek"])
def test_missing_topic_header_is_a_payload_error(platform, read):
    request = signed(platform)
    topic_header = {"shopify": "x-shopify-topic", "shopline": "x-shopline-topic",
                    "woocommerce": "x-wc-webhook-topic"}[platform]
    request = WebhookRequest({k: v for k, v in request.headers.items() if k != topic_header}, request.body)
    with pytest.raises(PayloadError, match="(?i)topic"):
        getattr(adapters.REGISTRY[platform], read)(request)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("topic", ["products/update", "product.updated", "refunds/create", "unknown"])
def test_unknown_topic_gives_no_conversion(platform, topic):
    adapter = adapters.REGISTRY[platform]
    notification = adapter.parse(signed(platform, topic=topic))
    assert adapter.to_conversions(notification, options=ConversionOptions()) == []
    assert adapter.to_conversions(notification, options=ConversionOptions(
        topic_events={topic: "EVENT_PURCHASE"})) == []  # a store setting cannot invent a converter
    assert adapter.privacy_request(notification) is None


@pytest.mark.parametrize("platform", PLATFORMS)
def test_store_can_ignore_a_topic(platform):
    adapter = adapters.REGISTRY[platform]
    notification = adapter.parse(signed(platform))
    assert adapter.to_conversions(notification, options=ConversionOptions(test_mode=True))
    assert adapter.to_conversions(notification, options=ConversionOptions(
        topic_events={notification.topic: ""}, test_mode=True)) == []


@pytest.mark.parametrize("platform", PLATFORMS)
def test_delivery_key(platform):
    adapter = adapters.REGISTRY[platform]
    body = fixture_bytes(SAMPLES[platform][1], shop=SHOPS[platform])
    topic = SAMPLES[platform][0]
    request = signed(platform, delivery_id="b54557e48a5fbf7d70bcd043")
    key = adapter.delivery_key(request, adapter.parse(request))
    body_hash = hashlib.sha256(topic.encode() + b"\n" + body).hexdigest()
    if platform == "woocommerce":  # its delivery id changes on every attempt
        assert key == body_hash
    else:
        assert key == "b54557e48a5fbf7d70bcd043"
        id_header = f"x-{platform}-webhook-id"
        bare = WebhookRequest({k: v for k, v in request.headers.items() if k != id_header}, request.body)
        assert adapter.delivery_key(bare, adapter.parse(bare)) == body_hash
    other = signed(platform, body=body + b" ", delivery_id="another")
    if platform == "woocommerce":
        assert adapter.delivery_key(other, adapter.parse(other)) != key


# -- properties: nothing but AdapterError escapes ---------------------------------------
HEADER_NAMES = sorted({h.lower() for h in SIGNATURE_HEADERS.values()} | {
    "x-shopify-topic", "x-shopline-topic", "x-wc-webhook-topic", "x-shopify-webhook-id",
    "x-shopify-shop-domain", "x-shopline-shop-domain", "x-wc-webhook-source"})
TOPICS = sorted({t for m in adapters.REGISTRY.values() for t in m.TOPICS} | {
    "customers/redact", "shop/redact", "merchants/redact", "customers/data_request"})

headers_strategy = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=20),
                                   st.text(max_size=80) | st.sampled_from(TOPICS), max_size=6)
bodies = st.binary(max_size=300) | st.text(max_size=200).map(str.encode) | st.sampled_from(
    [b"webhook_id=1", b"{}", b"[]", b'{"id": 1}', b"[" * 5000, b"1" * 5000, b'{"a": Infinity}'])
secret_lists = st.lists(st.text(max_size=20), max_size=3)


@pytest.mark.parametrize("platform", PLATFORMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=headers_strategy, body=bodies, secrets=secret_lists)
def test_verify_and_parse_raise_only_adapter_errors(platform, headers, body, secrets):
    adapter = adapters.REGISTRY[platform]
    request = WebhookRequest.build(headers, body)
    for step in (lambda: adapter.verify(request, secrets=secrets), lambda: adapter.parse(request),
                 lambda: adapter.is_ping(request)):
        try:
            step()
        except AdapterError:
            pass
    try:
        notification = adapter.parse(request)
    except AdapterError:
        return
    assert isinstance(notification.payload, dict)
    assert isinstance(adapter.delivery_key(request, notification), str)


KEYS = ["id", "token", "name", "number", "test", "status", "financial_status", "currency",
        "presentment_currency", "currency_code", "total", "total_price", "subtotal_price", "current_total_price",
        "total_price_set", "presentment_money", "shop_money", "amount", "line_items", "line_price",
        "line_price_set", "price_set", "quantity", "price", "product_id", "variant_id", "variation_id", "sku",
        "title", "subtotal", "note_attributes", "attributes", "value", "key", "meta_data", "landing_site",
        "customer", "email", "phone", "area_code", "billing", "created_at", "processed_at", "updated_at",
        "date_created_gmt", "date_paid_gmt", "date_paid", "payment_details", "pay_status", "customer_id"]
leaves = (st.none() | st.booleans() | st.integers(-2, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
          | st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T10:00:00", "0001-01-01T00:00:00+08:00",
                             "paid", "processing", "USD", "BRL", "EUR", "9.99", "", "kwai_click_id",
                             "_kwai_click_id", "/?click_id=A+B", "1e999999", "-0"]))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4), max_leaves=8)
overrides = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5)
options_strategy = st.builds(
    ConversionOptions, value=st.sampled_from(["total", "subtotal"]),
    content_id=st.sampled_from(["product", "variant", "sku"]),
    currency_rates=st.sampled_from([{}, {"EUR": Decimal("5.80")}]),
    report_currency=st.sampled_from(["", "BRL"]), test_mode=st.booleans())
BASES = {  # a realistic payload per topic, which the property then damages
    "orders/": "shopify/shopify_orders_create.json", "checkouts/": "shopify/shopify_checkouts_create.json",
    "carts/": "shopify/shopify_carts_create.json", "customers/": "shopline/shopline_customers_update_docs_overview.json",
    "order.": "woocommerce/woocommerce_order_created.json", "customer.": "shopify/shopify_customers_redact.json",
}


def _base(topic: str) -> dict:
    path = next((p for prefix, p in BASES.items() if topic.startswith(prefix)), BASES["orders/"])
    return json.loads(fixture_bytes(path))


@pytest.mark.parametrize("platform", PLATFORMS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(top=overrides, line=overrides, topic=st.sampled_from(TOPICS), options=options_strategy)
def test_to_conversions_raises_only_payload_errors(platform, top, line, topic, options):
    adapter = adapters.REGISTRY[platform]
    payload = {**_base(topic), **top}
    if isinstance(payload.get("line_items"), list) and payload["line_items"] and isinstance(payload["line_items"][0], dict):
        payload["line_items"][0] = {**payload["line_items"][0], **line}
    notification = Notification(platform=platform, topic=topic, shop=None, delivery_id=None, payload=payload)
    try:
        conversions = adapter.to_conversions(notification, options=options)
    except PayloadError:
        return
    for conversion in conversions:
        assert isinstance(conversion, Conversion)
        event = conversion.event
        assert event.event_time.tzinfo is timezone.utc
        assert (event.value is None) == (event.currency is None)
        assert event.currency is None or event.currency in CURRENCIES
        assert event.value is None or event.value == event.value.quantize(Decimal("0.01"))
        assert event.third_party == platform
        assert all(isinstance(v, str) and v for v in conversion.identifiers.values())
        assert all(isinstance(c.id, str) and c.id for c in event.contents)
