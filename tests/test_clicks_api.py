"""`POST /clicks/<store_id>` and the snippet routes through Flask's test client, over a
real database, on an injected clock. The limits are tests/test_click_limits.py."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kwai_bridge.attribution import ClickStore
from kwai_bridge.clicks import CLICK_BODY_LIMIT, STATIC
from kwai_bridge.db import make_engine, migrate
from server import create_app
from tests.clock import Clock
from tests.serving import app_with_stores, store_entry, write_stores

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
SHOP_ORIGIN = "https://acme.myshopify.com"
STOREFRONT = "https://www.acme.com"
LOCAL_STOREFRONT = "http://127.0.0.1:8123"
FOREIGN = "https://evil.example"
TOKEN = "acme-servers-" + "7" * 40


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_for(tmp_path, database_url, clock):
    def build(**settings_):
        stores = [store_entry("shopify", "acme", storefront_domains=["www.acme.com", LOCAL_STOREFRONT],
                              click_params=["click_id", "</script><script>alert(1)//"], click_tokens=[TOKEN]),
                  store_entry("woocommerce", "woo")]
        return app_with_stores(tmp_path, database_url, stores, clock=clock, **settings_)
    return build


@pytest.fixture
def client(app_for):
    return app_for().test_client()


def clicks_of(client, store_id="acme", **identifiers):
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    found = ClickStore(engine).lookup(store_id, identifiers, since=T0 - timedelta(days=1))
    return {kind: click.click_id for kind, click in found.items()}


def post(client, body, *, origin=STOREFRONT, addr="198.51.100.1", headers=None):
    headers = {**({"Origin": origin} if origin else {}), **(headers or {})}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/clicks/acme", data=data, headers=headers, content_type="application/json",
                       environ_base={"REMOTE_ADDR": addr})


# -- accepted --------------------------------------------------------------------------------
def test_a_click_is_stored_and_answered_202(client):
    answer = post(client, {"click_id": "Kw+1/=", "cart_token": "c1-7f3a9e", "checkout_token": "chk-5"})
    assert answer.status_code == 202 and answer.json == {"status": "stored"}
    assert clicks_of(client, cart_token="c1-7f3a9e", checkout_token="chk-5") == {
        "cart_token": "Kw+1/=", "checkout_token": "Kw+1/="}


def test_clear_email_and_phone_are_hashed_at_once_and_never_kept_nor_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    answer = post(client, {"click_id": "C1", "email": "  John.Doe@Example.COM ", "phone": "+55 (11) 91234-5678"})
    assert answer.status_code == 202, answer.json
    email = hashlib.sha256(b"john.doe@example.com").hexdigest()
    phone = hashlib.sha256(b"5511912345678").hexdigest()
    assert clicks_of(client, email_sha256=email, phone_sha256=phone) == {"email_sha256": "C1", "phone_sha256": "C1"}
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    with engine.connect() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM clicks").all()).lower()
    assert "john" not in dump and "91234" not in dump
    assert "john" not in caplog.text.lower() and "91234" not in caplog.text


def test_upper_case_hashes_are_stored_lower_case(client):
    assert post(client, {"click_id": "C1", "email_sha256": "AB" * 32}).status_code == 202
    assert clicks_of(client, email_sha256="ab" * 32) == {"email_sha256": "C1"}


def test_a_shopify_cart_token_with_its_key_is_stored_under_the_token_alone(client):
    # Shopify's Ajax cart API answers `<token>?key=<key>`; the order webhook carries the token
    answer = post(client, {"click_id": "C1", "cart_token": "Z2NwLXVzLWVhc3Qx?key=5f1e0c2d9a"})
    assert answer.status_code == 202, answer.json
    assert clicks_of(client, cart_token="Z2NwLXVzLWVhc3Qx") == {"cart_token": "C1"}
    assert clicks_of(client, cart_token="Z2NwLXVzLWVhc3Qx?key=5f1e0c2d9a") == {}
    refused = post(client, {"click_id": "C1", "cart_token": "?key=5f1e0c2d9a"})
    assert refused.status_code == 400 and "cart_token" in refused.json["errors"]


# -- who may report what ---------------------------------------------------------------------------
def test_a_request_without_origin_needs_one_of_the_store_click_tokens(client):
    body = {"click_id": "C1", "cart_token": "c1"}
    bare = post(client, body, origin=None)
    assert bare.status_code == 401 and "Authorization: Bearer" in bare.json["status"]
    assert bare.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in ("Bearer " + "8" * 52, "Basic " + TOKEN, TOKEN, "Bearer"):
        answer = post(client, body, origin=None, headers={"Authorization": wrong})
        assert answer.status_code == 401 and "click_tokens" in answer.json["status"]
    woo = client.post("/clicks/woo", json=body, headers={"Authorization": "Bearer " + TOKEN})
    assert woo.status_code == 401  # the token of another store
    assert clicks_of(client, cart_token="c1") == {}
    server = post(client, {**body, "customer_id": "77"}, origin=None, headers={"Authorization": f"Bearer {TOKEN}"})
    assert server.status_code == 202, server.json
    assert clicks_of(client, cart_token="c1", customer_id="77") == {"cart_token": "C1", "customer_id": "C1"}


@pytest.mark.parametrize("origin", [STOREFRONT, FOREIGN])
def test_a_guessable_customer_id_is_taken_from_the_store_servers_only(client, origin):
    answer = post(client, {"click_id": "Forged", "customer_id": "77", "cart_token": "c1"}, origin=origin)
    assert answer.status_code == 403
    assert "customer_id" in answer.json["status"] or answer.json["status"] == "origin not allowed"
    assert clicks_of(client, customer_id="77", cart_token="c1") == {}


def test_an_order_id_comes_with_the_order_key_from_everyone(client):
    for headers, origin in (({}, STOREFRONT), ({"Authorization": f"Bearer {TOKEN}"}, None)):
        alone = post(client, {"click_id": "Forged", "order_id": "1001"}, origin=origin, headers=headers)
        assert alone.status_code == 400 and "order_key" in alone.json["errors"]["order_id"][0]
    assert clicks_of(client, order_id="1001") == {}
    keyed = post(client, {"click_id": "C1", "order_id": "1001", "order_key": "b7e3c1f0a9d84e2c"})
    assert keyed.status_code == 202 and clicks_of(client, order_id="1001") == {"order_id": "C1"}


# -- refused ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"cart_token": "c1"}, "click_id"),
    ({"click_id": "C1"}, "_schema"),
    ({"click_id": "C1", "cart_token": "c1", "referrer": "x"}, "referrer"),
    ({"click_id": 123, "cart_token": "c1"}, "click_id"),
    ({"click_id": "C1", "cart_token": ["c1"]}, "cart_token"),
    ({"click_id": "C1", "order_id": 727, "order_key": "k"}, "order_id"),
    ({"click_id": "C1", "order_id": "727"}, "order_id"),
    ({"click_id": "", "cart_token": "c1"}, "click_id"),
    ({"click_id": "C 1", "cart_token": "c1"}, "click_id"),
    ({"click_id": "C1", "email_sha256": "not-a-hash"}, "email_sha256"),
    ({"click_id": "C1", "email": "no-at-sign"}, "email"),
    ({"click_id": "C1", "email": "a@b.c", "email_sha256": "a" * 64}, "email"),
    ({"click_id": "C1", "phone": "call me"}, "phone"),
    ({"click_id": "C1", "order_key": "wc_order_x"}, "order_key"),
    ({"click_id": None, "cart_token": "c1"}, "click_id"),
])
def test_a_wrong_body_is_400_with_the_reason(client, body, field):
    answer = post(client, body)
    assert answer.status_code == 400
    assert answer.json["status"] == "invalid click"
    assert field in answer.json["errors"], answer.json


@pytest.mark.parametrize("raw, reason", [
    (b"click_id=C1&cart_token=c1", "not JSON"),
    (b'["C1", "c1"]', "not an object"),
    (b"\xff\xfe", "not JSON"),
    (b"", "not JSON"),
    (b'{"click_id": NaN, "cart_token": "c1"}', "not JSON"),
])
def test_a_body_that_is_not_a_json_object_is_400(client, raw, reason):
    answer = post(client, raw)
    assert answer.status_code == 400 and reason in answer.json["status"]


def test_a_body_over_the_limit_is_413_and_stores_nothing(client):
    answer = post(client, {"click_id": "C1", "cart_token": "t" * CLICK_BODY_LIMIT})
    assert answer.status_code == 413
    assert answer.json == {"status": "body larger than the limit"}
    assert post(client, {"click_id": "C1", "cart_token": "t" * 500}).status_code == 202


def test_unknown_store_is_404(client):
    answer = client.post("/clicks/nope", json={"click_id": "C1", "cart_token": "c1"}, headers={"Origin": STOREFRONT})
    assert answer.status_code == 404
    assert client.options("/clicks/nope", headers={"Origin": SHOP_ORIGIN}).status_code == 404


# -- CORS -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("origin", [SHOP_ORIGIN, STOREFRONT, LOCAL_STOREFRONT])
def test_cors_preflight_and_post_for_the_store_origins(client, origin):
    preflight = client.options("/clicks/acme", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Origin" in preflight.headers["Vary"]
    answer = post(client, {"click_id": "C1", "cart_token": "c1"}, origin=origin)
    assert answer.status_code == 202
    assert answer.headers["Access-Control-Allow-Origin"] == origin


def test_a_foreign_origin_gets_no_cors_and_stores_nothing(client):
    preflight = client.options("/clicks/acme", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = post(client, {"click_id": "C1", "cart_token": "c1"}, origin=FOREIGN)
    assert answer.status_code == 403 and "Access-Control-Allow-Origin" not in answer.headers
    assert clicks_of(client, cart_token="c1") == {}
    other_store = client.options("/clicks/woo", headers={"Origin": SHOP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in other_store.headers


def test_a_shopify_pixel_sandbox_posting_as_text_from_origin_null_is_stored_without_cors(client):
    # Shopify's custom pixel runs in an iframe sandboxed without allow-same-origin.
    body = json.dumps({"click_id": "Pix+1", "checkout_token": "chk-5"})
    answer = client.post("/clicks/acme", data=body, headers={"Origin": "null"}, content_type="text/plain",
                         environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert answer.status_code == 202 and "Access-Control-Allow-Origin" not in answer.headers
    assert clicks_of(client, checkout_token="chk-5") == {"checkout_token": "Pix+1"}
    # any site can frame a sandbox: from one, nothing but a checkout token
    for guessable in ({"order_id": "1001", "order_key": "k"}, {"cart_token": "c1"},
                      {"checkout_token": "chk-6", "order_id": "1002", "order_key": "k"}):
        refused = client.post("/clicks/acme", data=json.dumps({"click_id": "Evil", **guessable}),
                              headers={"Origin": "null"}, content_type="text/plain")
        assert refused.status_code == 403 and "checkout_token" in refused.json["status"]
    assert clicks_of(client, order_id="1001", cart_token="c1", checkout_token="chk-6") == {}
    # no other platform runs a pixel sandbox: there, a null origin is a foreign one
    woo = client.post("/clicks/woo", data=json.dumps({"click_id": "W1", "order_id": "7", "order_key": "wc_order_k"}),
                      headers={"Origin": "null"}, content_type="text/plain")
    assert woo.status_code == 403
    assert clicks_of(client, "woo", order_id="7") == {}


def test_refusals_to_an_allowed_origin_still_carry_cors(client):
    too_big = post(client, {"click_id": "C1", "cart_token": "t" * CLICK_BODY_LIMIT}, origin=STOREFRONT)
    wrong = post(client, {"click_id": "C1"}, origin=STOREFRONT)
    assert (too_big.status_code, wrong.status_code) == (413, 400)
    assert too_big.headers["Access-Control-Allow-Origin"] == wrong.headers["Access-Control-Allow-Origin"] == STOREFRONT


# -- the snippet -------------------------------------------------------------------------------------
def _settings_of(script: str, target: str = "window") -> dict:
    line, _, _ = script.partition("\n")
    assert line.startswith(f"{target}.KWAI_BRIDGE = ") and line.endswith(";")
    return json.loads(line[len(f"{target}.KWAI_BRIDGE = "):-1])


@pytest.mark.parametrize("path, target, source", [
    ("/snippet/acme.js", "window", "snippet.js"),
    ("/snippet/acme/pixel.js", "self", "shopify-pixel.js"),
])
def test_the_snippet_is_served_with_its_settings_and_is_cacheable(app_for, path, target, source):
    client = app_for(PUBLIC_URL="https://bridge.example.com").test_client()
    answer = client.get(path, headers={"Host": "attacker.example"})
    assert answer.status_code == 200
    assert answer.mimetype == "application/javascript"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    script = answer.get_data(as_text=True)
    assert _settings_of(script, target) == {
        "endpoint": "https://bridge.example.com/clicks/acme", "platform": "shopify",
        "clickParams": ["click_id", "</script><script>alert(1)//"], "windowDays": 30, "consentMode": False,
        "eventsEndpoint": "https://bridge.example.com/events/acme",
        "events": ["EVENT_CONTENT_VIEW", "EVENT_SEARCH", "EVENT_ADD_TO_CART", "EVENT_INITIATED_CHECKOUT",
                   "EVENT_ADD_PAYMENT_INFO"], "triggers": []}
    assert "</script>" not in script.partition("\n")[0]
    assert script.endswith((STATIC / source).read_text())
    etag = answer.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:8123", "[::1]:8000", "shop.localhost"])
def test_without_a_public_url_a_loopback_host_is_served_but_not_to_shared_caches(client, host):
    answer = client.get("/snippet/woo.js", headers={"Host": host})
    assert answer.status_code == 200
    assert _settings_of(answer.get_data(as_text=True))["endpoint"] == f"http://{host}/clicks/woo"
    assert answer.headers["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize("path", ["/snippet/acme.js", "/snippet/acme/pixel.js"])
@pytest.mark.parametrize("host", ["attacker.example", "bridge.example.com", "127.0.0.1.evil.example",
                                  "localhost.evil.example:80", "[::1"])
def test_without_a_public_url_any_other_host_is_refused_naming_the_setting(client, path, host):
    # the script tells shoppers' browsers where to post click ids: a Host header a client
    # chose (and a shared cache then kept) would send them elsewhere
    answer = client.get(path, headers={"Host": host})
    assert answer.status_code == 503
    assert "KWAI_BRIDGE_PUBLIC_URL" in answer.json["status"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert b"clicks/" not in answer.get_data()


@pytest.mark.parametrize("path", ["/snippet/nope.js", "/snippet/nope/pixel.js"])
def test_the_snippet_of_an_unknown_store_is_404(client, path):
    assert client.get(path).status_code == 404


# -- fuzzing -----------------------------------------------------------------------------------------
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=80),
                    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                               max_size=2))
_KEYS = st.sampled_from(["click_id", "cart_token", "checkout_token", "order_id", "order_key", "customer_id",
                         "email_sha256", "phone_sha256", "email", "phone", "other", ""])


@pytest.fixture
def fuzz_client(tmp_path, sqlite_url, clock):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", clicks_per_minute=1_000_000)])
    migrate(make_engine(sqlite_url))
    app = create_app({"DATABASE_URL": sqlite_url, "STORES": str(stores), "CLICKS_PER_ADDRESS": "1000000"},
                     clock=clock)
    return app.test_client()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=6).map(lambda d: json.dumps(d).encode()),
                      st.binary(max_size=300)))
def test_fuzzed_bodies_never_give_a_5xx(fuzz_client, body):
    answer = post(fuzz_client, body, origin=SHOP_ORIGIN)
    assert answer.status_code in (202, 400, 403), answer.get_data()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=CLICK_BODY_LIMIT + 1, max_value=200_000), byte=st.binary(min_size=1, max_size=1))
def test_oversized_bodies_are_413(fuzz_client, size, byte):
    assert post(fuzz_client, byte * size, origin=SHOP_ORIGIN).status_code == 413
