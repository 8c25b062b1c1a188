"""The command line against real databases and the fake Kwai over loopback."""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from click.testing import CliRunner

import kwai_bridge.cli as cli
from adapters.values import Conversion
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox
from kwai_bridge.kwai.events import KwaiEvent
from tests.conftest import fixture_bytes
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, Served, bridge_env, run_cli, store_entry, write_stores
from tests.signing import headers_for

NOW = datetime.now(timezone.utc)


@pytest.fixture
def env(tmp_path, database_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"),
                                                      store_entry("woocommerce", "woo")])
    env = {"KWAI_BRIDGE_DATABASE_URL": database_url, "KWAI_BRIDGE_STORES": str(stores),
           "KWAI_BRIDGE_PUBLIC_URL": "https://bridge.example.com"}
    migrated = invoke(env, "migrate")  # creates the database and imports the stores file
    assert migrated.exit_code == 0, migrated.output
    return env


def invoke(env, *args):
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def outbox_for(url: str) -> Outbox:
    engine = make_engine(url)
    migrate(engine)
    return Outbox(engine)


def queue(outbox: Outbox, *keys: str, click_id: str | None = "clk", delivery: str = "d1") -> None:
    outbox.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key=delivery,
                  received_at=NOW, body=b"{}", headers={},
                  conversions=[Conversion(event=KwaiEvent(
                      event_name="EVENT_PURCHASE", event_time=NOW, third_party="shopify",
                      idempotency_key=key, click_id=click_id), click_source="attribute") for key in keys])


def test_stores_check_prints_every_url(env):
    result = invoke(env, "stores", "check")
    assert result.exit_code == 0, result.output
    assert "https://bridge.example.com/webhooks/shopify/acme" in result.output
    assert "https://bridge.example.com/webhooks/woocommerce/woo" in result.output


def test_stores_check_names_the_store_and_field(env, tmp_path):
    broken = store_entry("shopify", "acme")
    del broken["pixel_id"]
    write_stores(tmp_path / "stores.toml", [broken])
    result = invoke(env, "stores", "check")
    assert result.exit_code == 1
    assert 'store "acme"' in result.output and "pixel_id" in result.output


def test_migrate_then_commands_run(env):
    result = invoke(env, "migrate")
    assert result.exit_code == 0 and "schema at version" in result.output


@pytest.mark.parametrize("value, level", [("debug", "DEBUG"), ("", "INFO"), ("LOUD", "INFO")])
def test_log_level_is_the_validated_setting(env, monkeypatch, value, level):
    # A wrong level leaves logging at INFO; the command that reads the settings says why.
    configured = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: configured.append(kw["level"]))
    result = CliRunner().invoke(cli.main, ["stores", "check"], env={**env, "KWAI_BRIDGE_LOG_LEVEL": value})
    assert configured == [level]
    assert (result.exit_code == 0) == (value != "LOUD")


@pytest.mark.postgres
def test_postgres_commands_refuse_an_old_schema(tmp_path, postgres_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    env = {"KWAI_BRIDGE_DATABASE_URL": postgres_url, "KWAI_BRIDGE_STORES": str(stores)}
    for args in (["worker", "--once"], ["events", "list"]):
        result = invoke(env, *args)
        assert result.exit_code == 1
        assert "kwai-bridge migrate" in result.output


def test_events_list_json_shape_and_filters(env):
    outbox = outbox_for(env["KWAI_BRIDGE_DATABASE_URL"])
    queue(outbox, "order:1:EVENT_PURCHASE", "order:2:EVENT_PURCHASE")
    queue(outbox, "order:3:EVENT_PURCHASE", click_id=None, delivery="d2")
    result = invoke(env, "events", "list", "--json")
    rows = json.loads(result.output)
    assert {r["business_key"] for r in rows} == {f"order:{i}:EVENT_PURCHASE" for i in (1, 2, 3)}
    assert set(rows[0]) == {"id", "store", "platform", "event_name", "business_key", "status", "click_source",
                            "attempts", "next_attempt_at", "last_result", "last_error", "skip_reason",
                            "value_note", "click_note", "value", "currency", "created_at", "sent_at"}
    only = json.loads(invoke(env, "events", "list", "--json", "--status", "unattributed").output)
    assert [r["business_key"] for r in only] == ["order:3:EVENT_PURCHASE"]
    assert json.loads(invoke(env, "events", "list", "--json", "--store", "woo").output) == []
    assert len(json.loads(invoke(env, "events", "list", "--json", "--store", "acme").output)) == 3
    text = invoke(env, "events", "list").output
    assert "pending 2" in text and "unattributed 1" in text


def test_worker_once_send_test_event_and_replay(env):
    outbox = outbox_for(env["KWAI_BRIDGE_DATABASE_URL"])
    queue(outbox, "order:1:EVENT_PURCHASE", "order:2:EVENT_PURCHASE")
    with FakeKwai() as kwai:
        env = {**env, "KWAI_BRIDGE_KWAI_ENDPOINT": kwai.base_url}
        kwai.fail_next(2, result_code=10005)
        result = invoke(env, "worker", "--once")
        assert json.loads(result.output.strip().splitlines()[-1]) == {"dead": 2}
        assert "0 event(s)" in invoke(env, "events", "replay", "--store", "woo").output
        first = min(r.id for r in outbox.list_events())
        assert "1 event(s) back to pending" in invoke(env, "events", "replay", "--id", str(first)).output
        replayed = invoke(env, "events", "replay", "--store", "acme", "--result", "10005")
        assert "1 event(s) back to pending" in replayed.output
        trail = json.loads(invoke(env, "audit", "--json", "--limit", "3").output)
        assert [(e["actor"], e["action"], e["target"], e["detail"]) for e in trail] == [
            ("cli", "events.replay", "store:acme", {"result": 10005, "replayed": 1}),
            ("cli", "events.replay", f"event:{first}", {"replayed": 1}),
            ("cli", "events.replay", "store:woo", {"replayed": 0})]
        result = invoke(env, "worker", "--once")
        assert json.loads(result.output.strip().splitlines()[-1]) == {"sent": 2}

        sent = invoke(env, "send-test-event", "--store", "acme", "--clickid", "TEST-CLICK")
        assert sent.exit_code == 0, sent.output
        last = kwai.received[-1].fields
        assert (last["clickid"], last["trackFlag"], last["event_name"], last["third_party"]) == \
            ("TEST-CLICK", True, "EVENT_PURCHASE", "shopify")
        kwai.fail_next(1, result_code=10006)
        refused = invoke(env, "send-test-event", "--store", "woo", "--clickid", "X", "--event", "EVENT_ADD_TO_CART")
        assert refused.exit_code == 1 and "10006" in refused.output
        assert kwai.received[-1].fields["third_party"] == "woocommerce"
    assert invoke(env, "send-test-event", "--store", "nope", "--clickid", "X").exit_code == 2


def test_deliveries_reprocess_converts_failed_bodies(env):
    outbox = outbox_for(env["KWAI_BRIDGE_DATABASE_URL"])
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order.update(test=False, financial_status="paid")
    body = json.dumps(order).encode()
    headers = {"x-shopify-topic": "orders/paid", "x-shopify-shop-domain": "acme.myshopify.com",
               "x-shopify-webhook-id": "w1"}
    outbox.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key="w1",
                  received_at=NOW - timedelta(hours=1), body=body, headers=headers, conversions=[],
                  outcome="failed", error="RuntimeError: a fault since fixed")
    other_store = invoke(env, "deliveries", "reprocess", "--store", "woo")
    assert json.loads(other_store.output)["reprocessed"] == 0
    result = invoke(env, "deliveries", "reprocess", "--since", (NOW - timedelta(days=1)).date().isoformat())
    assert json.loads(result.output) == {"failed": 0, "reprocessed": 1, "skipped": 0}
    names = sorted(r.event_name for r in outbox.list_events())
    assert names == ["EVENT_PURCHASE"]
    again = invoke(env, "deliveries", "reprocess")
    assert json.loads(again.output)["reprocessed"] == 0, "a reprocessed delivery is not converted twice"


def test_serve_with_no_store_yet_serves_and_says_how_to_add_one(tmp_path, sqlite_url):
    env = bridge_env(database_url=sqlite_url, stores=tmp_path / "unused.toml", STORES="")
    served = Served(env, workers=1).start()
    try:
        ready = requests.get(f"{served.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "kwai-bridge stores import" in " ".join(ready.json()["problems"])
    finally:
        served.__exit__(None, None, None)
    assert "deploy/stores.example.toml" in served.output()


def test_serve_refuses_to_start_on_an_empty_database_when_its_stores_file_is_wrong(tmp_path, sqlite_url):
    missing = bridge_env(database_url=sqlite_url, stores=tmp_path / "missing.toml")
    started = run_cli(missing, "serve", "--port", "9")
    assert started.returncode != 0 and f"no stores file at {tmp_path / 'missing.toml'}" in started.stderr
    wrong = write_stores(tmp_path / "wrong.toml", [store_entry("shopify", "acme", pixel_id=123),
                                                   {**store_entry("woocommerce", "woo"), "platform": "magento"}])
    started = run_cli(bridge_env(database_url=sqlite_url, stores=wrong), "serve", "--port", "9")
    assert started.returncode != 0
    assert 'store "acme": pixel_id: must be a non-empty string (quote numbers: pixel_id = "123")' in started.stderr
    assert 'store "woo": platform: must be one of' in started.stderr


def test_serve_prints_each_webhook_url(tmp_path, sqlite_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopline", "line")])
    env = bridge_env(database_url=sqlite_url, stores=stores)
    served = Served(env, workers=1).start()
    served.__exit__(None, None, None)
    assert f"http://localhost:{served.port}/webhooks/shopline/line" in served.output()


def test_sighup_reloads_the_stores_file_without_a_restart(tmp_path, sqlite_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=sqlite_url, stores=stores)
    body = fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"])
    with Served(env, workers=1, extra_args=["--with-worker"]) as served:
        def post(store_id: str) -> int:
            headers = headers_for("shopify", "orders/create", shop=SHOPS["shopify"], secret=SECRETS["shopify"],
                                  body=body)
            return requests.post(f"{served.url}/webhooks/shopify/{store_id}", data=body, headers=headers,
                                 timeout=10).status_code

        assert post("newshop") == 404
        write_stores(stores, [store_entry("shopify", "acme"), store_entry("shopify", "newshop",
                                                                          shop="other.myshopify.com")])
        old_workers = served.web_workers()
        assert old_workers
        os.kill(served.proc.pid, signal.SIGHUP)
        # Until the old workers are gone (gevent workers look at their stop flag once a
        # second), either generation may answer.
        deadline = time.monotonic() + 20
        while served.web_workers() & old_workers and time.monotonic() < deadline:
            time.sleep(0.2)
        assert post("newshop") == 401, "the new store is known (the shop header names another shop)"
        assert post("acme") == 200


def test_serve_with_worker_delivers_what_it_receives(tmp_path, sqlite_url):
    """What `make run` starts: the web workers and the dispatcher together."""
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order.update(test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": "run-click"}])
    body = json.dumps(order).encode()
    with FakeKwai() as kwai:
        env = bridge_env(database_url=sqlite_url, stores=stores, kwai_url=kwai.base_url)
        with Served(env, workers=1, extra_args=["--with-worker"]) as served:
            headers = headers_for("shopify", "orders/paid", shop=SHOPS["shopify"], secret=SECRETS["shopify"],
                                  body=body)
            answer = requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers, timeout=10)
            assert answer.status_code == 200
            assert kwai.wait_for(1, timeout=20), "the dispatcher started by serve sent nothing"
        assert [r.fields["clickid"] for r in kwai.successes()] == ["run-click"]


def test_stores_import_export_and_key_rotation(env, tmp_path):
    path = write_stores(tmp_path / "more.toml", [store_entry("shopline", "line", access_token="${LINE_TOKEN}"),
                                                  store_entry("shopify", "acme", access_token="tok-acme-in-clear-31")])
    refused = invoke(env, "stores", "import", str(path))
    assert refused.exit_code == 1 and "nothing imported" in refused.output and "LINE_TOKEN is not set" in refused.output
    env = {**env, "LINE_TOKEN": "tok-line-from-env-77"}
    imported = invoke(env, "stores", "import", str(path), "--prune")
    assert json.loads(imported.output) == {"created": ["line"], "updated": ["acme"], "unchanged": [],
                                           "removed": ["woo"]}

    exported = invoke(env, "stores", "export").output
    assert 'access_token = "${LINE_TOKEN}"' in exported and 'access_token = "…r-31"' in exported
    assert "tok-acme-in-clear-31" not in exported and "tok-line-from-env-77" not in exported
    clear = invoke(env, "stores", "export", "--with-secrets").output
    assert 'access_token = "tok-acme-in-clear-31"' in clear
    (tmp_path / "back.toml").write_text(clear)
    again = invoke(env, "stores", "import", str(tmp_path / "back.toml"))
    # The same values; "line" now holds its token itself instead of the reference.
    assert (json.loads(again.output)["unchanged"], json.loads(again.output)["updated"]) == (["acme"], ["line"])

    from kwai_bridge.sealing import new_key

    rotated_env = {**env, "KWAI_BRIDGE_SECRET_KEYS": f"{new_key()},{os.environ['KWAI_BRIDGE_SECRET_KEYS']}"}
    assert "2 store(s) sealed with the first key" in invoke(rotated_env, "secrets", "rotate").output
    new_only = {**env, "KWAI_BRIDGE_SECRET_KEYS": rotated_env["KWAI_BRIDGE_SECRET_KEYS"].split(",")[0]}
    assert 'access_token = "tok-acme-in-clear-31"' in invoke(new_only, "stores", "export", "--with-secrets").output
    listed = json.loads(invoke({**env, "KWAI_BRIDGE_SECRET_KEYS": ""}, "stores", "list", "--json").output)
    assert [(s["id"], s["webhook_url"]) for s in listed] == [
        ("acme", "https://bridge.example.com/webhooks/shopify/acme"),
        ("line", "https://bridge.example.com/webhooks/shopline/line")]
