"""The click API's limits, counted in the database: per client address and per store,
across app instances on one database and across the workers of a real `kwai-bridge
serve`; the cap on a store's click-store entries; and the client's address, read from
X-Forwarded-For only through the trusted proxies. Time is an injected clock, except
against the real server."""
from __future__ import annotations

import ipaddress
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select

from kwai_bridge import db
from kwai_bridge.attribution import ClickStore
from kwai_bridge.web.proxies import ForwardedByTrustedProxies
from server import create_app
from tests.clock import Clock
from tests.serving import Served, bridge_env, store_entry, write_stores

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a window starts here
ORIGINS = {"acme": "https://acme.myshopify.com", "tiny": "https://acme.myshopline.com",
           "capped": "https://capped.myshopify.com"}
TOKEN = "acme-servers-" + "7" * 40


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores_file(tmp_path):
    return write_stores(tmp_path / "stores.toml", [
        store_entry("shopify", "acme", click_tokens=[TOKEN]),
        store_entry("shopline", "tiny", clicks_per_minute=20),
        store_entry("shopify", "capped", shop="capped.myshopify.com", max_clicks=100),
    ])


@pytest.fixture
def app_for(stores_file, database_url, clock):
    db.migrate(db.make_engine(database_url))

    def build(**settings):
        return create_app({"DATABASE_URL": database_url, "STORES": str(stores_file), **settings}, clock=clock)
    return build


def post(client, store: str = "acme", *, addr: str, headers: dict | None = None, origin: bool = True, **body):
    body = body or {"click_id": "C1", "cart_token": "c1"}
    return client.post(f"/clicks/{store}", json=body, environ_base={"REMOTE_ADDR": addr},
                       headers={**({"Origin": ORIGINS[store]} if origin else {}), **(headers or {})})


def codes(answers) -> list[int]:
    return [a.status_code for a in answers]


# -- per address, per store, in the database -------------------------------------------------------
def test_an_address_gets_its_limit_a_minute_across_app_instances_on_one_database(app_for, clock):
    # two web processes: before, each kept its own token buckets
    first, second = app_for(CLICKS_PER_ADDRESS="10").test_client(), app_for(CLICKS_PER_ADDRESS="10").test_client()
    answers = [post(first if i % 2 else second, addr="198.51.100.1") for i in range(12)]
    assert codes(answers) == [202] * 10 + [429] * 2
    refused = answers[-1]
    assert refused.json == {"status": "too many clicks from this address"}
    assert refused.headers["Retry-After"] == "60"  # the window started at T0
    assert post(first, addr="198.51.100.2").status_code == 202  # another address is not held back
    clock.advance(45)
    assert post(second, addr="198.51.100.1").headers["Retry-After"] == "15"
    clock.advance(15)  # the next window
    assert codes(post(c, addr="198.51.100.1") for c in (first, second)) == [202, 202]


def test_a_refused_request_is_not_counted(app_for, clock):
    client = app_for(CLICKS_PER_ADDRESS="3").test_client()
    assert codes(post(client, addr="198.51.100.1") for _ in range(10)) == [202] * 3 + [429] * 7
    # the store's counter took the three stored clicks only
    with client.application.extensions["kwai_bridge.runtime"].engine.connect() as conn:
        counts = dict(conn.execute(select(db.rate_windows.c.scope, db.rate_windows.c["count"])).all())
    assert counts == {"clicks:address": 3, "clicks:store": 3}


def test_a_store_gets_its_clicks_per_minute_from_all_addresses_together(app_for, clock):
    client = app_for().test_client()
    answers = [post(client, "tiny", addr=f"203.0.113.{i}") for i in range(1, 23)]
    assert codes(answers) == [202] * 20 + [429] * 2
    assert answers[-1].json == {"status": "too many clicks for this store"}
    assert post(client, "acme", addr="203.0.113.200").status_code == 202  # other stores are not held back
    clock.advance(60)
    assert post(client, "tiny", addr="203.0.113.201").status_code == 202


def test_an_ipv6_client_is_counted_by_its_64(app_for):
    client = app_for(CLICKS_PER_ADDRESS="3").test_client()
    same_64 = [f"2001:db8:1:2::{i}" for i in range(1, 5)]
    assert codes(post(client, addr=a) for a in same_64) == [202, 202, 202, 429]
    assert post(client, addr="2001:db8:1:3::1").status_code == 202
    assert codes(post(client, addr=a) for a in ("::ffff:198.51.100.7", "198.51.100.7")) == [202, 202]


def test_the_store_servers_are_held_to_the_store_limit_only(app_for):
    client = app_for(CLICKS_PER_ADDRESS="3").test_client()
    server = {"Authorization": f"Bearer {TOKEN}"}
    assert codes(post(client, addr="192.0.2.10", headers=server, origin=False) for _ in range(6)) == [202] * 6


# -- the cap on stored clicks ----------------------------------------------------------------------------
def test_clicks_from_rotating_addresses_never_hold_more_than_max_clicks(sqlite_url, stores_file, clock):
    # SQLite only, for time: the eviction's SQL runs on both in the test below
    db.migrate(db.make_engine(sqlite_url))
    client = create_app({"DATABASE_URL": sqlite_url, "STORES": str(stores_file)}, clock=clock).test_client()
    store = ClickStore(client.application.extensions["kwai_bridge.runtime"].engine)
    most = 0
    for i in range(3000):
        answer = post(client, "capped", addr=f"10.{i // 250}.{i % 250}.1", click_id=f"C{i}", cart_token=f"cart-{i}")
        assert answer.status_code == 202, answer.json
        clock.advance(1)  # 60 a minute: under the store's clicks_per_minute
        if i % 50 == 0:
            most = max(most, store.count("capped"))
    assert max(most, store.count("capped")) <= 100
    since = T0 - timedelta(days=1)
    assert store.lookup("capped", {"cart_token": "cart-2999"}, since=since)["cart_token"].click_id == "C2999"
    assert store.lookup("capped", {"cart_token": "cart-0"}, since=since) == {}  # the oldest went first
    assert store.lookup("acme", {"cart_token": "c1"}, since=since) == {}  # other stores untouched
    # the counters of past windows go with the hourly prune
    store.prune(now=clock.now, windows={"capped": 30})
    with store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(db.rate_windows)).scalar()
    assert left <= 2  # the store's and one address's, of the current window


def test_an_eviction_keeps_every_identifier_of_the_newest_clicks(app_for, clock):
    client = app_for().test_client()
    store = ClickStore(client.application.extensions["kwai_bridge.runtime"].engine)
    for i in range(60):
        body = {"click_id": f"C{i}", "cart_token": f"cart-{i}", "checkout_token": f"chk-{i}",
                "email_sha256": f"{i:064x}"}
        assert post(client, "capped", addr=f"10.0.{i}.1", **body).status_code == 202
        clock.advance(1)
        assert store.count("capped") <= 100
    found = store.lookup("capped", {"cart_token": "cart-59", "checkout_token": "chk-59", "email_sha256": f"{59:064x}"},
                         since=T0)
    assert {c.click_id for c in found.values()} == {"C59"} and len(found) == 3


# -- the client's address through trusted proxies --------------------------------------------------------
def test_forwarded_addresses_are_read_only_from_the_configured_proxies(app_for):
    client = app_for(TRUSTED_PROXIES="10.0.0.0/24, 2001:db8:ff::1", CLICKS_PER_ADDRESS="3").test_client()

    def via(peer: str, forwarded: str) -> int:
        return post(client, addr=peer, headers={"X-Forwarded-For": forwarded}).status_code

    assert [via("10.0.0.2", "203.0.113.7") for _ in range(4)] == [202, 202, 202, 429]
    assert via("10.0.0.3", "203.0.113.8") == 202  # another shopper through another proxy
    assert via("2001:db8:ff::1", "203.0.113.9") == 202
    # what the client wrote to the left of what the proxy appended is not believed
    assert via("10.0.0.2", "198.51.100.50, 203.0.113.7") == 429
    # a client reaching the bridge directly cannot name itself: it is its peer address
    direct = [via("198.51.100.9", f"192.0.2.{i}") for i in range(5)]
    assert direct == [202, 202, 202, 429, 429]


def test_a_hop_count_is_still_read_as_the_weaker_form(app_for):
    client = app_for(TRUSTED_PROXIES="1", CLICKS_PER_ADDRESS="3").test_client()

    def via_proxy(shopper: str) -> int:
        return post(client, addr="10.0.0.2", headers={"X-Forwarded-For": shopper}).status_code

    assert [via_proxy("203.0.113.7") for _ in range(4)] == [202, 202, 202, 429]
    assert via_proxy("203.0.113.8") == 202


@pytest.mark.parametrize("peer, forwarded, proto, expected", [
    ("10.0.0.2", "203.0.113.7", "https", ("203.0.113.7", "https")),
    ("::ffff:10.0.0.2", "203.0.113.7", "https", ("203.0.113.7", "https")),  # a dual-stack socket's peer
    ("10.0.0.2", "10.0.0.9, 10.0.0.5", "", ("10.0.0.9", "http")),  # only proxies: the leftmost
    ("10.0.0.2", "not-an-address, 203.0.113.7", "https", ("203.0.113.7", "https")),
    ("10.0.0.2", "203.0.113.7, junk", "ftp", ("10.0.0.2", "http")),  # nothing vouched for past junk
    ("10.0.0.2", "", "https", ("10.0.0.2", "https")),
    ("198.51.100.9", "203.0.113.7", "https", ("198.51.100.9", "http")),  # not a proxy: ignored
])
def test_the_middleware_believes_only_a_trusted_peer(peer, forwarded, proto, expected):
    seen = {}

    def app(environ, start_response):
        seen["addr"], seen["scheme"] = environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]
        return []

    middleware = ForwardedByTrustedProxies(app, [ipaddress.ip_network("10.0.0.0/24")])
    middleware({"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded, "HTTP_X_FORWARDED_PROTO": proto,
                "wsgi.url_scheme": "http"}, None)
    assert (seen["addr"], seen["scheme"]) == expected


# -- a real server with several workers --------------------------------------------------------------
def test_the_address_limit_holds_across_the_workers_of_a_real_server(tmp_path, database_url, stores_file):
    db.migrate(db.make_engine(database_url))
    env = bridge_env(database_url=database_url, stores=stores_file, CLICKS_PER_ADDRESS="20")
    body = json.dumps({"click_id": "C1", "cart_token": "c1"})
    with Served(env, workers=4) as served:
        started = time.time()
        # a new connection each time, so that the requests spread over the workers
        answers = [requests.post(f"{served.url}/clicks/acme", data=body, timeout=10,
                                 headers={"Origin": ORIGINS["acme"], "Content-Type": "application/json",
                                          "Connection": "close"}).status_code for _ in range(60)]
        ended = time.time()
    assert set(answers) == {202, 429}, answers
    windows = int(ended // 60) - int(started // 60) + 1  # the requests may straddle a minute
    assert answers.count(202) == 20 if windows == 1 else answers.count(202) <= 20 * windows
