"""The web app's answers, through Flask's test client over a real database."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from kwai_bridge.db import make_engine, migrate
from server import create_app
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ORDER = fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"])


@pytest.fixture
def app_for(tmp_path, database_url):
    def build(stores=None, **settings):
        config = {"DATABASE_URL": database_url, **settings}
        if stores is not None:
            config["STORES"] = str(write_stores(tmp_path / "stores.toml", stores))
        migrate(make_engine(database_url))  # PostgreSQL is migrated on purpose, not on start
        return create_app(config)
    return build


@pytest.fixture
def client(app_for):
    app = app_for([store_entry("shopify", "acme"), store_entry("woocommerce", "woo"),
                   store_entry("shopline", "line")])
    return app.test_client()


def outbox_of(client):
    return client.application.extensions["kwai_bridge.runtime"].outbox


def shopify_headers(topic="orders/create", body=ORDER, **kw):
    return headers_for("shopify", topic, shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body, **kw)


def test_healthz_and_readyz(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["stores"] == 3


def test_readyz_without_stores_says_how_to_add_one(app_for):
    app = app_for(None)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert "stores.example.toml" in " ".join(answer.json["problems"])


def test_signed_order_is_accepted_and_stored(client):
    answer = client.post("/webhooks/shopify/acme", data=ORDER, headers=shopify_headers())
    assert answer.status_code == 200 and answer.json == {"status": "received"}, answer.json
    assert outbox_of(client).list_events() == []  # made by the worker's converter, moments later
    assert convert(client.application) == 1
    rows = outbox_of(client).list_events()
    assert [(r.event_name, r.status, r.skip_reason) for r in rows] == [("EVENT_PLACE_ORDER", "skipped", "test order")]


@pytest.mark.parametrize("case,mutate,status", [
    ("no signature", lambda h, b: ({k: v for k, v in h.items() if k != "X-Shopify-Hmac-Sha256"}, b), 401),
    ("tampered body", lambda h, b: (h, b.replace(b"404.95", b"004.95")), 401),
    ("wrong shop header", lambda h, b: ({**h, "X-Shopify-Shop-Domain": "evil.myshopify.com"}, b), 401),
])
def test_refusals_store_nothing(client, case, mutate, status):
    headers, body = mutate(shopify_headers(), ORDER)
    answer = client.post("/webhooks/shopify/acme", data=body, headers=headers)
    assert answer.status_code == status, case
    assert outbox_of(client).list_events() == []
    assert answer.json["status"]


def test_shop_header_ignores_case_and_trailing_slash(client):
    headers = {**shopify_headers(), "X-Shopify-Shop-Domain": "ACME.myshopify.com/"}
    assert client.post("/webhooks/shopify/acme", data=ORDER, headers=headers).status_code == 200


@pytest.mark.parametrize("url", ["/webhooks/shopify/nope", "/webhooks/woocommerce/acme", "/webhooks/magento/acme"])
def test_unknown_store_or_platform_is_404(client, url):
    assert client.post(url, data=ORDER, headers=shopify_headers()).status_code == 404


@pytest.mark.parametrize("url", ["/webhooks/", "/webhooks/shopify/", "/webhooks/shopify/acme/", "/webhooks//acme",
                                 "/webhooks/shopify/acme/more"])
def test_what_is_no_webhook_route_is_flask_404(client, url):
    answer = client.post(url, data=ORDER, headers=shopify_headers())
    assert (answer.status_code, answer.json) == (404, {"status": "not found"})


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
@pytest.mark.parametrize("url", ["/webhooks/shopify/acme", "/webhooks/shopify"])
def test_a_webhook_route_takes_only_post(client, method, url):
    answer = client.open(url, method=method, data=ORDER, headers=shopify_headers())
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    if method != "HEAD":
        assert answer.json == {"status": "method not allowed"}
    assert outbox_of(client).list_events() == [] and convert(client.application) == 0


def test_a_webhook_answer_is_json_of_its_stated_length(client):
    answer = client.post("/webhooks/shopify/acme", data=ORDER, headers=shopify_headers())
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.data) and answer.data.endswith(b"}\n")


def test_a_store_id_in_the_path_is_read_as_utf8(client):
    answer = client.post("/webhooks/shopify/caf%C3%A9", data=ORDER, headers=shopify_headers())
    assert (answer.status_code, answer.json) == (404, {"status": "unknown store", "store": "café"})


def test_webhooks_behind_trusted_proxies(app_for):
    app = app_for([store_entry("shopify", "acme")], TRUSTED_PROXIES="10.0.0.0/24")
    answer = app.test_client().post("/webhooks/shopify/acme", data=ORDER, headers=shopify_headers(),
                                    environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert (answer.status_code, answer.json) == (200, {"status": "received"})
    assert convert(app) == 1


def test_route_by_shop_header(client):
    answer = client.post("/webhooks/shopify", data=ORDER, headers=shopify_headers())
    assert answer.status_code == 200
    convert(client.application)
    assert len(outbox_of(client).list_events()) == 1
    unknown = {**shopify_headers(), "X-Shopify-Shop-Domain": "other.myshopify.com"}
    assert client.post("/webhooks/shopify", data=ORDER, headers=unknown).status_code == 404


def test_body_over_the_limit_is_413_and_stores_nothing(app_for):
    app = app_for([store_entry("shopify", "acme")], MAX_BODY_BYTES="1024")
    client = app.test_client()
    answer = client.post("/webhooks/shopify/acme", data=ORDER, headers=shopify_headers())
    assert answer.status_code == 413
    assert outbox_of(client).list_events() == []


def test_signed_but_not_json_is_400_converting_at_the_request(app_for):
    client = app_for([store_entry("shopify", "acme")], CONVERSION="request").test_client()
    body = b"not json at all"
    answer = client.post("/webhooks/shopify/acme", data=body, headers=shopify_headers(body=body))
    assert (answer.status_code, answer.json["status"]) == (400, "body is not JSON (JSONDecodeError)")
    assert outbox_of(client).list_events() == []
    with outbox_of(client).engine.connect() as conn:
        assert conn.execute(text("select count(*) from deliveries")).scalar() == 0


def test_signed_but_not_json_is_stored_and_refused_by_the_worker(client):
    """Converted later, the body is read by the worker: stored failed with the reason a
    conversion at the request answered, and no event."""
    body = b"not json at all"
    answer = client.post("/webhooks/shopify/acme", data=body, headers=shopify_headers(body=body))
    assert (answer.status_code, answer.json) == (200, {"status": "received"})
    assert convert(client.application) == 1
    assert outbox_of(client).list_events() == []
    with outbox_of(client).engine.connect() as conn:
        outcome, error = conn.execute(text("select outcome, error from deliveries")).one()
    assert (outcome, error) == ("failed", "refused (400): body is not JSON (JSONDecodeError)")
    again = client.post("/webhooks/shopify/acme", data=body, headers=shopify_headers(body=body))
    assert again.json == {"status": "duplicate"}


@pytest.mark.parametrize("url", ["/webhooks/woocommerce/woo", "/webhooks/woocommerce"])
def test_woocommerce_ping_gets_exactly_200_and_nothing_stored(client, url):
    body = fixture_bytes("woocommerce/woocommerce_ping_body.DERIVED_FROM_CODE.txt")
    answer = client.post(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200
    assert outbox_of(client).list_events() == []


def test_same_webhook_twice_is_one_delivery(client):
    headers = shopify_headers(delivery_id="b54557e4-0001")
    first = client.post("/webhooks/shopify/acme", data=ORDER, headers=headers)
    second = client.post("/webhooks/shopify/acme", data=ORDER, headers=headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json["status"] == "duplicate"
    convert(client.application)
    assert len(outbox_of(client).list_events()) == 1


@pytest.mark.parametrize("conversion, answered", [("worker", "received"), ("request", "failed")])
def test_conversion_fault_is_stored_as_failed_and_answered_200(app_for, conversion, answered):
    client = app_for([store_entry("shopify", "acme")], CONVERSION=conversion).test_client()
    order = json.loads(ORDER)
    for key in ("created_at", "processed_at", "updated_at"):
        order[key] = None  # no time at all: the conversion cannot place the event
    body = json.dumps(order).encode()
    answer = client.post("/webhooks/shopify/acme", data=body, headers=shopify_headers(body=body))
    assert answer.status_code == 200 and answer.json["status"] == answered
    convert(client.application)
    failed = outbox_of(client).deliveries_for_reprocess(since=EPOCH)
    assert len(failed) == 1 and failed[0].body == body


def test_a_database_failure_while_converting_is_503_and_the_retry_is_stored(app_for):
    # Converting at once: a live order is attributed from the click store; with the
    # store's table gone (the database failing), the webhook is answered 503 with nothing
    # kept, and not stored as a failed delivery that would wait for a manual reprocess.
    # (The worker's converter keeps the delivery received: tests/test_conversion.py.)
    client = app_for([store_entry("shopify", "acme")], CONVERSION="request").test_client()
    order = json.loads(ORDER)
    order["test"] = False
    body = json.dumps(order).encode()
    headers = shopify_headers(body=body, delivery_id="db-fails-1")
    outbox = outbox_of(client)
    with outbox.engine.begin() as conn:
        conn.execute(text("ALTER TABLE clicks RENAME TO clicks_away"))
    answer = client.post("/webhooks/shopify/acme", data=body, headers=headers)
    assert answer.status_code == 503 and answer.json["status"] == "storage unavailable"
    assert answer.headers["Retry-After"] == "10"
    assert outbox.deliveries_for_reprocess(since=EPOCH) == [] and outbox.list_events() == []
    with outbox.engine.begin() as conn:
        conn.execute(text("ALTER TABLE clicks_away RENAME TO clicks"))
    again = client.post("/webhooks/shopify/acme", data=body, headers=headers)
    assert again.status_code == 200 and again.json["status"] == "queued"
    assert [row.event_name for row in outbox.list_events()] == ["EVENT_PLACE_ORDER"]


SHOP_HEADERS = {"shopify": "X-Shopify-Shop-Domain", "shopline": "X-Shopline-Shop-Domain",
                "woocommerce": "X-WC-Webhook-Source"}
STORE_IDS = {"shopify": "acme", "shopline": "line", "woocommerce": "woo"}
SAMPLE = {"shopify": ("orders/create", "shopify/shopify_orders_create.json"),
          "shopline": ("orders/create", "shopline/shopline_orders_create.DERIVED_FROM_SDK.json"),
          "woocommerce": ("order.created", "woocommerce/woocommerce_order_created.json")}


@pytest.mark.parametrize("platform", ["shopify", "shopline", "woocommerce"])
@pytest.mark.parametrize("case", ["wrong shop header", "missing shop header", "wrong secret", "tampered"])
def test_every_platform_refuses_what_is_not_its_store(client, platform, case):
    topic, sample = SAMPLE[platform]
    body = fixture_bytes(sample, shop=SHOPS[platform])
    secret = "not-the-secret" if case == "wrong secret" else SECRETS[platform]
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=secret, body=body)
    if case == "wrong shop header":
        headers[SHOP_HEADERS[platform]] = "https://evil.example/" if platform == "woocommerce" else "evil.example.com"
    elif case == "missing shop header":
        del headers[SHOP_HEADERS[platform]]
    elif case == "tampered":
        body = body.replace(b"1", b"2", 1)
    answer = client.post(f"/webhooks/{platform}/{STORE_IDS[platform]}", data=body, headers=headers)
    # One app secret signs every store of a Shopify or Shopline app, so the shop header must
    # name the store; a WooCommerce secret belongs to one webhook, so its signature suffices.
    signature_only = platform == "woocommerce" and case in ("wrong shop header", "missing shop header")
    assert answer.status_code == (200 if signature_only else 401), answer.json
    convert(client.application)
    stored = outbox_of(client).list_events()
    assert (len(stored) == 2) if signature_only else (stored == [])  # a paid Woo order: placed + purchase
