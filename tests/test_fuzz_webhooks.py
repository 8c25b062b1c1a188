"""Property tests over the served app: arbitrary bodies and headers never give a 5xx, and
nothing is ever stored without a valid signature."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

import adapters
from kwai_bridge.db import deliveries, events
from server import create_app
from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for, sign

PLATFORMS = tuple(adapters.REGISTRY)
SIGNATURE_HEADER = {"shopify": "X-Shopify-Hmac-Sha256", "shopline": "X-Shopline-Hmac-Sha256",
                    "woocommerce": "X-WC-Webhook-Signature"}
TOPICS = ["orders/create", "orders/paid", "orders/updated", "carts/create", "checkouts/create",
          "customers/create", "customers/redact", "shop/redact", "order.created", "order.updated",
          "customer.created", "", "x" * 300]
SAMPLES = [fixture_bytes(p, shop=SHOPS[p.split("/")[0]]) for p in (
    "shopify/shopify_orders_create.json", "shopify/shopify_carts_create.json",
    "woocommerce/woocommerce_order_created.json", "shopline/shopline_orders_create.DERIVED_FROM_SDK.json")]

header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    stores = write_stores(tmp / "stores.toml", [store_entry(p, p) for p in PLATFORMS])
    return create_app({"DATABASE_URL": f"sqlite:///{tmp / 'fuzz.db'}", "STORES": str(stores),
                       "SQLITE_SYNCHRONOUS": "NORMAL"})


def stored(app) -> int:
    engine = app.extensions["kwai_bridge.runtime"].engine
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(deliveries)).scalar() + \
            conn.execute(select(func.count()).select_from(events)).scalar()


def mutated_sample(draw_body: bytes, key: str, value) -> bytes:
    try:
        data = json.loads(draw_body)
    except ValueError:
        return draw_body
    if isinstance(data, dict):
        data[key] = value
    return json.dumps(data).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(platform=st.sampled_from(PLATFORMS), topic=st.sampled_from(TOPICS),
       body=st.binary(max_size=400) | st.sampled_from(SAMPLES),
       extra=st.dictionaries(st.sampled_from(["X-Shopify-Shop-Domain", "X-Shopline-Shop-Domain",
                                              "X-WC-Webhook-Source", "X-Shopify-Webhook-Id", "Content-Type",
                                              "X-WC-Webhook-Topic"]), header_text, max_size=3),
       signature=header_text, by_shop=st.booleans())
def test_unsigned_or_badly_signed_never_stores_and_never_5xx(app, platform, topic, body, extra, signature,
                                                              by_shop):
    before = stored(app)
    headers = {**headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body),
               **extra, SIGNATURE_HEADER[platform]: signature}
    url = f"/webhooks/{platform}" if by_shop else f"/webhooks/{platform}/{platform}"
    answer = app.test_client().post(url, data=body, headers=headers)
    assert answer.status_code < 500
    if signature not in (sign(platform, SECRETS[platform], body)[SIGNATURE_HEADER[platform]],):
        assert stored(app) == before, f"stored without a valid signature ({answer.status_code})"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(platform=st.sampled_from(PLATFORMS), topic=st.sampled_from(TOPICS), sample=st.sampled_from(SAMPLES),
       key=st.sampled_from(["id", "line_items", "total_price", "created_at", "note_attributes", "currency",
                            "financial_status", "landing_site", "meta_data", "status", "date_paid_gmt",
                            "total_price_set", "token", "customer", "test"]),
       value=json_values, raw=st.booleans(), garbage=st.binary(max_size=200))
def test_validly_signed_garbage_is_answered_below_500(app, platform, topic, sample, key, value, raw, garbage):
    body = garbage if raw else mutated_sample(sample, key, value)
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
    answer = app.test_client().post(f"/webhooks/{platform}/{platform}", data=body, headers=headers)
    assert answer.status_code in (200, 400), answer.status_code
