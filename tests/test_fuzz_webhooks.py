"""Property tests over the app: arbitrary bodies and headers never give a 5xx, nothing is
ever stored without a valid signature, and no correctly signed delivery of any topic,
however damaged its payload, gets a 5xx (which the platform would retry until it removed
the subscription)."""
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
from tests.poison import (
    BASES, BIG_COUNTS, DATABASES, DIGITS, LONG, NUL, SURROGATE, body_of, database, deliver, final, make_app,
)
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


# -- every topic's sample, damaged, signed correctly, through the app on both databases ----
#: Keys the adapters read: a damaged value there reaches the converters and the inserts.
READ = {"id", "token", "cart_token", "checkout_token", "order_key", "customer_id", "email", "phone", "area_code",
        "phone_area_code", "currency", "presentment_currency", "currency_code", "quantity", "price", "total",
        "total_price", "subtotal_price", "amount", "line_items", "product_id", "variant_id", "variation_id", "sku",
        "title", "name", "number", "note_attributes", "attributes", "meta_data", "value", "key", "landing_site",
        "customer", "billing", "created_at", "processed_at", "updated_at", "date_created_gmt", "date_paid_gmt",
        "financial_status", "status", "test", "orders_to_redact", "orders_requested", "shop_domain",
        "store_domain", "order_status_url", "payment_details", "pay_status"}
DELETE = object()


def _paths(value, prefix=()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, prefix + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value[:3]):
            found += _paths(inner, prefix + (i,))
    return found



texts = st.text(st.characters(exclude_categories=()), max_size=24)  # surrogates, NUL and all
poison = st.one_of(
    texts,
    st.sampled_from([SURROGATE, NUL, "12" + NUL + "3", "x" + SURROGATE, LONG, "", " ", "0", "-1", "1e999999",
                     "NaN", "2026-13-45T25:61:00", "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-12:00",
                     *DIGITS.values()]),
    st.integers(min_value=-2**70, max_value=2**70), st.sampled_from(list(BIG_COUNTS.values())),
    st.floats(), st.none(), st.booleans(),
    st.lists(texts | st.integers(), max_size=3), st.dictionaries(st.sampled_from(sorted(READ)), texts, max_size=3),
    st.just(DELETE),
)


@st.composite
def damaged(draw):
    """(platform, topic, body): a sample of the topic with one to three values changed."""
    base = draw(st.sampled_from(sorted(BASES)))
    payload = json.loads(json.dumps(BASES[base]))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(payload)
        read = [p for p in paths if isinstance(p[-1], int) or p[-1] in READ]
        if not paths:
            break
        path = draw(st.sampled_from(read) if read and draw(st.booleans()) else st.sampled_from(paths))
        holder = payload
        for step in path[:-1]:
            holder = holder[step]
        value = draw(poison)
        if value is DELETE:
            del holder[path[-1]]
        else:
            holder[path[-1]] = value
    return base[0], base[1], body_of(payload)


@pytest.fixture(scope="module", params=DATABASES)
def served(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-topics")
    with database(request.param, tmp) as url:
        app = make_app(url, tmp)
        yield request.param, app.test_client()
        app.extensions["kwai_bridge.runtime"].engine.dispose()


#: Examples per database: at least 5,000 in all with PostgreSQL; SQLite alone has more.
EXAMPLES = {"sqlite": 3500, "postgres": 1500}


def test_every_topics_sample_damaged_and_signed_never_gets_a_5xx(served):
    kind, client = served

    @settings(max_examples=EXAMPLES[kind], deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(delivery=damaged())
    def check(delivery):
        platform, topic, body = delivery
        answer = deliver(client, platform, topic, body)
        assert answer.status_code < 500, (platform, topic, body[:300], answer.data)
        assert final(answer), answer.data

    check()
