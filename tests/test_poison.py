"""Poison inputs: payloads that once made the webhook path (and `/clicks`) answer 500 on
every retry, until the platform gave up and removed the subscription. Each is now
answered 4xx, or stored (a `failed` delivery kept for reprocessing at worst), and a
retry gets the same final answer. Run through the app on both databases."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from kwai_bridge import db
from tests.serving import SHOPS
from tests.poison import (
    BASES, BIG_COUNTS, DATABASES, DIGITS, LONG, NUL, SURROGATE, body_of, changed, database, deliver, final, make_app,
)


def _cases() -> list[pytest.param]:
    cases = []

    def case(name: str, platform: str, topic: str, path: tuple, value, expect: str | None = None) -> None:
        cases.append(pytest.param(platform, topic, path, value, expect, id=f"{platform}-{topic}-{name}"))

    bad_texts = {"lone surrogate": "12" + SURROGATE + "3", "NUL": "12" + NUL + "3", "3000 characters": LONG}
    bad_emails = {"lone surrogate": "jo" + SURROGATE + "n@example.com", "NUL": "jo" + NUL + "n@example.com"}
    # Shopify and Shopline orders, paid
    for platform in ("shopify", "shopline"):
        topic = "orders/paid"
        for name, value in bad_texts.items():
            case(f"order id with {name}", platform, topic, ("id",), value)
            case(f"customer id with {name}", platform, topic, ("customer", "id"), value)
            case(f"cart token with {name}", platform, topic, ("cart_token",), value)
            case(f"product id with {name}", platform, topic, ("line_items", 0, "product_id"), value)
        for name, value in bad_emails.items():
            case(f"e-mail with {name}", platform, topic, ("email",), value)
        case("currency with a NUL", platform, topic, ("currency",), "US" + NUL)
        case("currency with a lone surrogate", platform, topic, ("presentment_currency",), "US" + SURROGATE)
        case("title with a lone surrogate", platform, topic, ("line_items", 0, "title"), "Sunglasses " + SURROGATE)
        case("click id with a NUL", platform, topic, ("note_attributes",),
             [{"name": "__kwai_click_id", "value": "abc" + NUL}])
        for name, value in BIG_COUNTS.items():
            case(f"line quantity {name}", platform, topic, ("line_items", 0, "quantity"), value)
    for name, value in DIGITS.items():
        case(f"{name} phone", "shopify", "orders/paid", ("phone",), value, "queued" if name != "superscript" else None)
        case(f"{name} customer phone", "shopline", "orders/paid", ("customer", "phone"), value)
    # carts: the quantity is the high-water count, kept as a 32-bit integer
    for platform, topic in (("shopify", "carts/update"), ("shopline", "carts/create")):
        for name, value in BIG_COUNTS.items():
            case(f"quantity {name}", platform, topic, ("line_items", 0, "quantity"), value)
        for name, value in bad_texts.items():
            case(f"token with {name}", platform, topic, ("token",), value)
    line = {**BASES["shopify", "carts/update"]["line_items"][0], "quantity": 2**31 - 1}
    case("two lines of 2^31-1 items", "shopify", "carts/update", ("line_items",), [line, line])
    # checkouts and customers
    for name, value in bad_texts.items():
        case(f"token with {name}", "shopify", "checkouts/create", ("token",), value)
        case(f"customer id with {name}", "shopline", "customers/create", ("id",), value)
    for name, value in bad_emails.items():
        case(f"e-mail with {name}", "shopify", "checkouts/create", ("email",), value)
        case(f"e-mail with {name}", "shopline", "customers/create", ("email",), value)
    case("arabic-indic phone", "shopify", "checkouts/create", ("phone",), DIGITS["arabic-indic"])
    case("full-width phone", "shopline", "checkouts/create", ("phone",), DIGITS["full-width"])
    # WooCommerce
    for name, value in bad_texts.items():
        case(f"order id with {name}", "woocommerce", "order.created", ("id",), value)
        case(f"order key with {name}", "woocommerce", "order.created", ("order_key",), value)
        case(f"customer id with {name}", "woocommerce", "customer.created", ("id",), value)
    for name, value in bad_emails.items():
        case(f"billing e-mail with {name}", "woocommerce", "order.updated", ("billing", "email"), value)
        case(f"e-mail with {name}", "woocommerce", "customer.created", ("email",), value)
    for name, value in DIGITS.items():
        case(f"{name} billing phone", "woocommerce", "order.created", ("billing", "phone"), value,
             "queued" if name != "superscript" else None)
    case("line quantity 2^64", "woocommerce", "order.created", ("line_items", 0, "quantity"), 2**64)
    case("currency with a NUL", "woocommerce", "order.created", ("currency",), "BR" + NUL)
    # privacy requests: the duty runs before the delivery is recorded
    for platform in ("shopify", "shopline"):
        for name, value in DIGITS.items():
            case(f"{name} phone", platform, "customers/redact", ("customer", "phone"), value, "privacy")
        for name, value in bad_texts.items():
            case(f"customer id with {name}", platform, "customers/redact", ("customer", "id"), value)
            case(f"order id with {name}", platform, "customers/redact", ("orders_to_redact", 0), value)
    case("arabic-indic phone", "shopify", "customers/data_request", ("customer", "phone"), DIGITS["arabic-indic"],
         "privacy")
    case("e-mail with a lone surrogate", "shopify", "customers/data_request", ("customer", "email"),
         bad_emails["lone surrogate"], "privacy")
    return cases


CASES = _cases()


@pytest.fixture(scope="module", params=DATABASES)
def client(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("poison")
    with database(request.param, tmp) as url:
        app = make_app(url, tmp)
        yield app.test_client()
        app.extensions["kwai_bridge.runtime"].engine.dispose()


def test_there_are_the_named_shapes():
    assert len(CASES) >= 88


@pytest.mark.parametrize("platform, topic, path, value, expect", CASES)
def test_a_poison_payload_gets_a_final_answer_and_its_retry_the_same(client, platform, topic, path, value, expect):
    body = body_of(changed(BASES[platform, topic], path, value))
    webhook_id = hashlib.sha256(body).hexdigest()[:24]  # the retry comes with the same id
    first = deliver(client, platform, topic, body, delivery_id=webhook_id)
    assert first.status_code < 500, first.data
    assert final(first), first.data
    if expect is not None:
        assert stored_status(client, first) == expect, first.get_json()
    retry = deliver(client, platform, topic, body, delivery_id=webhook_id)
    assert retry.status_code < 500 and final(retry), retry.data
    if first.status_code == 200:
        assert retry.get_json()["status"] == "duplicate"
    else:
        assert retry.status_code == first.status_code


def stored_status(client, answer) -> str:
    """The answer's status; for a delivery received for the worker (converted by
    `deliver` since), the outcome its conversion stored: the newest delivery's."""
    status = answer.get_json()["status"]
    if status != "received":
        return status
    d = db.deliveries.c
    with client.application.extensions["kwai_bridge.runtime"].engine.connect() as conn:
        return conn.execute(select(d.outcome).order_by(d.id.desc()).limit(1)).scalar_one()


def _phone_hashes(client) -> set[str]:
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    ei = db.event_identifiers.c
    with engine.connect() as conn:
        return set(conn.execute(select(ei.value).where(ei.kind == "phone_sha256")).scalars())


@pytest.mark.parametrize("script", [s for s in DIGITS if s != "superscript"])
def test_any_decimal_digits_hash_as_their_ascii_digits(client, script):
    body = body_of(changed(BASES["woocommerce", "order.created"] | {"id": 9000 + len(script)},
                           ("billing", "phone"), DIGITS[script]))
    assert stored_status(client, deliver(client, "woocommerce", "order.created", body)) == "queued"
    assert hashlib.sha256(b"01155550101").hexdigest() in _phone_hashes(client)


@pytest.mark.parametrize("field, value, status", [
    ("phone", DIGITS["arabic-indic"], 202), ("phone", DIGITS["full-width"], 202), ("phone", DIGITS["devanagari"], 202),
    ("phone", "²³", 400), ("email", "jo" + SURROGATE + "@example.com", 202), ("click_id", "abc" + NUL, 400),
    ("cart_token", "c" + SURROGATE, 400),
])
def test_clicks_with_poison_values_get_a_final_answer(client, field, value, status):
    body = {"click_id": "CLICK", "cart_token": "cart-1", field: value}
    answer = client.post("/clicks/shopify", data=body_of(body), content_type="application/json",
                         headers={"Origin": f"https://{SHOPS['shopify']}"})
    assert answer.status_code == status, answer.data


def test_a_click_phone_in_arabic_indic_digits_is_the_same_shopper(client):
    from kwai_bridge.attribution import ClickStore
    from datetime import datetime, timezone

    assert client.post("/clicks/shopify", json={"click_id": "AR", "phone": DIGITS["arabic-indic"]},
                       headers={"Origin": f"https://{SHOPS['shopify']}"}).status_code == 202
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    found = ClickStore(engine).lookup("shopify", {"phone_sha256": hashlib.sha256(b"01155550101").hexdigest()},
                                      since=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert found["phone_sha256"].click_id == "AR"


@pytest.mark.parametrize("header, value", [("X-Shopify-Webhook-Id", LONG), ("X-Shopify-Topic", "orders/" + LONG)])
def test_a_header_too_long_to_store_is_400(client, header, value):
    body = body_of(changed(BASES["shopify", "orders/paid"], ("id",), 777000111))
    answer = deliver(client, "shopify", "orders/paid", body, **{header: value})
    assert answer.status_code == 400, answer.data
    assert "over 512 characters" in answer.get_json()["status"]
