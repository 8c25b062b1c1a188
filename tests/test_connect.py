"""`kwai-bridge stores connect` / `disconnect` on loopback against the fake platforms:
exactly the needed subscriptions, nothing changed the second time, wrong ones repaired,
only the bridge's own removed; refused without a public HTTPS URL; refused credentials
shown as `disconnected` with the platform's message."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kwai_bridge.cli as cli
from kwai_bridge.config import check_store, expected_topics
from kwai_bridge.connect import ConnectRefused, check_public_url, plan
from kwai_bridge.platforms import Subscription
from tests.fake_platforms import FAKES, api_entry
from tests.serving import store_entry, write_stores

PUBLIC = "https://bridge.example.com"


def invoke(env, *args):
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(params=sorted(FAKES))
def fake(request):
    with FAKES[request.param]() as fake:
        yield fake


def env_for(tmp_path, database_url, fake, **overrides):
    stores = write_stores(tmp_path / "stores.toml", [api_entry(fake, "acme", **overrides)])
    env = {"KWAI_BRIDGE_DATABASE_URL": database_url, "KWAI_BRIDGE_STORES": str(stores),
           "KWAI_BRIDGE_PUBLIC_URL": PUBLIC}
    assert invoke(env, "migrate").exit_code == 0
    return env


def connect(env) -> dict:
    result = invoke(env, "stores", "connect", "acme")
    return json.loads(result.output.strip().splitlines()[-1])


def test_connect_creates_exactly_the_needed_subscriptions_then_changes_nothing(tmp_path, sqlite_url, fake):
    env = env_for(tmp_path, sqlite_url, fake)
    needed = sorted(expected_topics(check_store(api_entry(fake, "acme"))))
    first = connect(env)
    assert sorted(first["created"]) == needed and first["ok"] == first["fixed"] == first["errors"] == []
    assert fake.topics() == needed
    address = f"{PUBLIC}/webhooks/{fake.name}/acme"
    assert {s.get("callbackUrl") or s.get("address") or s.get("delivery_url") for s in fake.subscriptions.values()} \
        == {address}
    if fake.name == "woocommerce":  # WooCommerce takes the store's own secret per webhook
        assert {s["secret"] for s in fake.subscriptions.values()} == {"wc_webhook_secret"}
    writes = [r for r in fake.requests if r[0] != "GET" and "graphql" not in r[1]]
    again = connect(env)
    assert sorted(again["ok"]) == needed and again["created"] == again["fixed"] == again["errors"] == []
    assert fake.topics() == needed
    assert [r for r in fake.requests if r[0] != "GET" and "graphql" not in r[1]] == writes
    listed = json.loads(invoke(env, "stores", "list", "--json").output)
    assert listed[0]["connection"] == "connected"


def test_a_wrong_address_is_fixed_and_disconnect_removes_only_the_bridges(tmp_path, sqlite_url, fake):
    env = env_for(tmp_path, sqlite_url, fake)
    connect(env)
    sub = next(iter(fake.subscriptions.values()))
    for key in ("callbackUrl", "address", "delivery_url"):
        if key in sub:
            sub[key] = "https://old-bridge.example.com/webhooks/%s/acme" % fake.name
    foreign = {"id": "gid://shopify/WebhookSubscription/1" if fake.name == "shopify" else "1",
               "topic": "ORDERS_CREATE" if fake.name == "shopify" else "order.created",
               "callbackUrl": "https://other-app.example/hook", "address": "https://other-app.example/hook",
               "delivery_url": "https://other-app.example/hook", "status": "active", "api_version": "v20250601"}
    fake.subscriptions[foreign["id"]] = foreign
    report = connect(env)
    assert len(report["fixed"]) == 1 and "(address)" in report["fixed"][0]
    done = json.loads(invoke(env, "stores", "disconnect", "acme").output)
    assert done["errors"] == [] and len(done["removed"]) == len(report["ok"]) + 1
    assert list(fake.subscriptions) == [foreign["id"]]
    listed = json.loads(invoke(env, "stores", "list", "--json").output)
    assert listed[0]["connection"] == "not connected"


def test_revoked_credentials_show_disconnected_with_the_platforms_message(tmp_path, sqlite_url, fake):
    env = env_for(tmp_path, sqlite_url, fake)
    fake.credentials_ok = False
    result = invoke(env, "stores", "connect", "acme")
    assert result.exit_code == 1 and "credentials refused" in result.output
    listed = json.loads(invoke(env, "stores", "list", "--json").output)
    assert listed[0]["connection"].startswith("disconnected: HTTP 401: ")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("url, ok", [
    ("https://bridge.example.com", True), ("http://127.0.0.1:8000", True), ("http://localhost:5000/", True),
    ("http://bridge.example.com", False), ("", False),
])
def test_connect_wants_a_public_https_url(url, ok):
    if ok:
        assert check_public_url(url) == url.rstrip("/")
    else:
        with pytest.raises(ConnectRefused, match="KWAI_BRIDGE_PUBLIC_URL"):
            check_public_url(url)


def test_connect_is_refused_without_the_public_url(tmp_path, sqlite_url):
    with FAKES["woocommerce"]() as fake:
        env = env_for(tmp_path, sqlite_url, fake)
        result = CliRunner().invoke(cli.main, ["stores", "connect", "acme"], env={**env, "KWAI_BRIDGE_PUBLIC_URL": ""})
        assert result.exit_code == 1 and "KWAI_BRIDGE_PUBLIC_URL" in result.output
        assert fake.requests == []


def test_plan_reads_states_and_versions():
    store = check_store(store_entry("woocommerce", "acme", consumer_key="k", consumer_secret="s"))
    address = "https://b.example/webhooks/woocommerce/acme"
    subs = [Subscription("1", "order.created", address, active=False, status="disabled"),
            Subscription("2", "order.updated", address, active=False, status="paused"),
            Subscription("3", "customer.created", address)]
    steps = {s.topic: (s.action, s.why) for s in plan(store, subs, address=address)}
    assert steps == {"order.created": ("fix", "disabled"), "order.updated": ("fix", "paused"),
                     "customer.created": ("ok", "")}
    versioned = [Subscription("1", "order.created", address, version="v20240301")]
    assert plan(store, versioned, address=address, pinned_version="v20250601")[0].why == "version v20240301"
