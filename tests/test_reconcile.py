"""Reconciliation against the fake platforms on loopback, per platform:

- 500 orders, webhooks delivered for a random 80%, `kwai-bridge reconcile` killed with
  SIGKILL mid-pass and run again: every paid order has exactly one purchase event, Kwai
  received each once, and the accuracy report's reasons add up for every day;
- throttled answers slow the pass down without ever coming back too early;
- revoked credentials: disconnected, no request loop, webhooks keep flowing, and fixed
  credentials resume from the checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from random import Random

import pytest

import adapters
from adapters.values import ConversionOptions, Notification, WebhookRequest
from kwai_bridge.accuracy import accuracy
from sqlalchemy import update

from kwai_bridge.conversion import Converter
from kwai_bridge.db import EventStatus, events
from kwai_bridge.links import CONNECTED, Links
from kwai_bridge.reconcile import Reconciler, seen
from kwai_bridge.runtime import Runtime, build_attribution, build_pipeline
from tests.fake_kwai import FakeKwai
from tests.fake_platforms import FAKES, api_entry, sample_order, webhook_topic
from tests.serving import ROOT, SECRETS, bridge_env, cli_command, keep_output, run_cli, write_stores
from tests.signing import headers_for

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def fill(fake, count: int, *, seed: int = 7) -> list[dict]:
    """`count` orders over the last `count` seconds: 90% paid, a few test orders."""
    rng = Random(seed)
    orders = []
    for i in range(count):
        paid = rng.random() < 0.9
        test = fake.name != "woocommerce" and paid and rng.random() < 0.02
        orders.append(fake.add_order(sample_order(fake.name, fake.shop, order_id=9000 + i, paid=paid, test=test,
                                                  updated=NOW - timedelta(seconds=count - i),
                                                  click_id=f"click-{9000 + i}")))
    return orders


def deliver(pipeline, store, order: dict) -> None:
    """The order's webhook, as the platform sends it, through the webhook path."""
    paid = order.get("financial_status") == "paid" or order.get("status") == "processing"
    topic = webhook_topic(store.platform, paid)
    body = json.dumps(order).encode()
    headers = headers_for(store.platform, topic, shop=store.shop, secret=SECRETS[store.platform], body=body)
    answer = pipeline.handle(store.platform, store.id, WebhookRequest.build(headers, body), now=NOW)
    assert answer.status == 200, answer
    Converter(pipeline, clock=lambda: NOW).drain()  # the worker's converter, moments later


def setting_up(tmp_path, database_url, fake, **env_extra):
    stores = write_stores(tmp_path / "stores.toml", [api_entry(fake, "acme")])
    env = bridge_env(database_url=database_url, stores=stores, PUBLIC_URL="http://127.0.0.1:9", **env_extra)
    runtime = Runtime.from_env(env, migrate=True)
    runtime.import_stores_file()
    store = runtime.registry.get("acme")
    Links(runtime.engine).set_status(store, CONNECTED, now=NOW)  # as `stores connect` leaves it
    return env, runtime, store


def paid_orders(orders) -> set[str]:
    return {str(o["id"]) for o in orders
            if (o.get("financial_status") == "paid" or o.get("status") == "processing") and not o.get("test")}


def check_report_adds_up(runtime, store, *, paid: int) -> list:
    rows = accuracy(runtime.engine, [store], since=NOW - timedelta(days=2), now=NOW)
    for row in rows:
        assert row.paid_orders - row.sent == sum(row.reasons.values()), row
    assert sum(r.paid_orders for r in rows) == paid
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("platform", sorted(FAKES))
def test_reconcile_killed_mid_pass_recovers_every_paid_order_once(tmp_path, sqlite_url, platform):
    with FAKES[platform](page_limit=250) as fake, FakeKwai() as kwai:
        orders = fill(fake, 500)
        env, runtime, store = setting_up(tmp_path, sqlite_url, fake, KWAI_ENDPOINT=kwai.base_url)
        pipeline = build_pipeline(runtime)
        delivered = Random(3).sample(orders, k=400)
        for order in delivered:
            deliver(pipeline, store, order)
        before = runtime.outbox.counts()

        fake.on_page = lambda page: time.sleep(0.15)  # a pass of several pages, long enough to be killed in
        proc = subprocess.Popen(cli_command("reconcile", "--store", "acme"), env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 60
        while fake.order_pages_served < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the pass ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        keep_output("kwai-bridge reconcile (killed)", proc.stdout.read())
        proc.stdout.close()
        fake.on_page = None

        done = run_cli(env, "reconcile", "--store", "acme")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        assert report["stores"] == 1 and report["errors"] == {} and report["orders_seen"] >= 1
        sent = run_cli(env, "worker", "--once")
        assert sent.returncode == 0, sent.stderr

        wanted = paid_orders(orders)
        purchases = [e for e in runtime.outbox.list_events(store_id="acme", limit=5000)
                     if e.event_name == "EVENT_PURCHASE"]
        by_order = Counter(e.business_key.split(":")[1] for e in purchases)
        assert {o for o, n in by_order.items() if n == 1} >= wanted and max(by_order.values()) == 1
        assert {e.business_key.split(":")[1] for e in purchases if e.status == EventStatus.SENT} == wanted
        received = Counter(r.fields["clickid"] for r in kwai.successes() if r.fields["event_name"] == "EVENT_PURCHASE")
        assert set(received) == {f"click-{o}" for o in wanted} and max(received.values()) == 1
        # what the webhooks brought is not stored again
        assert runtime.outbox.counts()["unattributed"] == before["unattributed"]
        rows = check_report_adds_up(runtime, store, paid=len(wanted) + sum(1 for o in orders if o.get("test")))
        sources = Counter()
        for row in rows:
            sources.update(row.sources)
        missed = paid_orders(orders) - {str(o["id"]) for o in delivered}
        assert sources["recovered by reconciliation"] >= len(missed)


@pytest.mark.parametrize("platform", sorted(FAKES))
def test_throttling_slows_the_pass_and_is_never_exceeded(tmp_path, sqlite_url, platform):
    with FAKES[platform](page_limit=250) as fake:
        orders = fill(fake, 120)
        _, runtime, store = setting_up(tmp_path, sqlite_url, fake)
        fake.throttle_next(5, retry_after=0.1)
        started = time.monotonic()
        report = Reconciler(runtime.engine, build_pipeline(runtime), page_size=20).run([store], now=NOW)
        assert report.errors == {} and report.orders_seen == 120
        assert time.monotonic() - started >= 0.5
        assert fake.throttled == 5 and fake.too_early == 0
        assert report.recovered_events == len(paid_orders(orders)) + sum(1 for o in orders if o.get("test"))


@pytest.mark.parametrize("platform", sorted(FAKES))
def test_revoked_credentials_disconnect_then_resume_from_the_checkpoint(tmp_path, database_url, platform):
    with FAKES[platform](page_limit=250) as fake:
        orders = fill(fake, 60)
        _, runtime, store = setting_up(tmp_path, database_url, fake)
        pipeline = build_pipeline(runtime)
        reconciler = Reconciler(runtime.engine, pipeline)
        assert reconciler.run([store], now=NOW).orders_seen == 60
        links = Links(runtime.engine)
        checkpoint = links.get("acme").checkpoint
        assert checkpoint == NOW - timedelta(seconds=1)

        # the merchant makes new credentials: the old ones are refused
        fake.token, fake.secret = "new-token-0123456789", "cs_new_0123456789"
        newer = [fake.add_order(sample_order(fake.name, fake.shop, order_id=9900 + i, updated=NOW + timedelta(seconds=i),
                                             click_id=f"click-{9900 + i}")) for i in range(3)]
        report = reconciler.run([store], now=NOW + timedelta(minutes=15))
        assert report.errors["acme"].startswith("disconnected: HTTP 401")
        assert links.status_of(store, links.get("acme")).startswith("disconnected: HTTP 401")
        calls = len(fake.requests)
        for minutes in (30, 45, 60):  # later passes do not call a store whose credentials were refused
            assert reconciler.run([store], now=NOW + timedelta(minutes=minutes)).stores == 0
        assert len(fake.requests) == calls
        deliver(pipeline, store, newer[0])  # webhooks keep flowing meanwhile
        assert any(e.business_key == f"order:{newer[0]['id']}:EVENT_PURCHASE"
                   for e in runtime.outbox.list_events(store_id="acme", limit=10))

        fixed = replace(store, admin_api_token=fake.token) if platform != "woocommerce" \
            else replace(store, consumer_secret=fake.secret)
        runtime.catalog.replace(fixed, actor="test", now=NOW)
        runtime.registry.refresh(wait=True)
        resumed = reconciler.run([runtime.registry.get("acme")], now=NOW + timedelta(minutes=75))
        # from the checkpoint less its overlap (5 minutes): all 60 again, and the 3 new ones
        assert resumed.errors == {} and resumed.orders_seen == 63
        assert resumed.recovered_events == 2  # the one a webhook brought is not recovered again
        assert links.get("acme").status == CONNECTED
        assert links.get("acme").checkpoint == NOW + timedelta(seconds=2)


def test_the_accuracy_report_gives_every_difference_a_reason(tmp_path, database_url):
    with FAKES["shopify"]() as fake:
        orders = fill(fake, 40, seed=11)
        for order in orders[:6]:  # no click id anywhere: waits for one
            order["note_attributes"] = []
        env, runtime, store = setting_up(tmp_path, database_url, fake)
        report = Reconciler(runtime.engine, build_pipeline(runtime)).run([store], now=NOW)
        assert report.errors == {}
        dead = [e for e in runtime.outbox.list_events(store_id="acme", status="pending", limit=3)]
        with runtime.engine.begin() as conn:
            conn.execute(update(events).where(events.c.id.in_([e.id for e in dead]))
                         .values(status="dead", last_result=10001))
        paid = paid_orders(orders)
        tests = sum(1 for o in orders if o.get("test"))
        rows = check_report_adds_up(runtime, store, paid=len(paid) + tests)
        reasons = Counter()
        for row in rows:
            reasons.update(row.reasons)
        waiting = len(paid & {str(o["id"]) for o in orders[:6]})
        assert reasons == Counter({k: v for k, v in {"waiting for a click": waiting, "dead (10001)": 3,
                                                     "pending or retrying": len(paid) - waiting - 3,
                                                     "test order": tests}.items() if v})
        later = accuracy(runtime.engine, [store], since=NOW - timedelta(days=2), now=NOW + timedelta(days=2))
        assert sum(r.reasons.get("no click ever", 0) for r in later) == waiting
        printed = run_cli(env, "reconcile", "report", "--store", "acme", "--since",
                          (NOW - timedelta(days=2)).date().isoformat(), "--json")
        assert printed.returncode == 0, printed.stderr
        assert [(r["day"], r["paid_orders"], r["sent"]) for r in json.loads(printed.stdout)] == \
            [(r.day, r.paid_orders, r.sent) for r in rows]


def test_an_order_from_the_api_without_its_click_binds_one_from_the_click_store(tmp_path, sqlite_url):
    with FAKES["shopify"]() as fake:
        (order,) = fill(fake, 1)
        order["note_attributes"], order["landing_site"] = [], None  # nothing of the click in the order
        _, runtime, store = setting_up(tmp_path, sqlite_url, fake)
        (purchase,) = adapters.shopify.to_conversions(Notification(
            platform="shopify", topic="orders/paid", shop=store.shop, delivery_id=None, payload=order),
            options=ConversionOptions())
        email = purchase.identifiers["email_sha256"]
        build_attribution(runtime).record_click(store, click_id="CLICK-FROM-SNIPPET", identifiers={"email_sha256": email},
                                                order_key=None, now=NOW - timedelta(minutes=5))
        assert seen(store, order).paid_day is not None
        report = Reconciler(runtime.engine, build_pipeline(runtime)).run([store], now=NOW)
        assert report.recovered_events == 1
        (event,) = runtime.outbox.list_events(store_id="acme", limit=5)
        assert event.status == EventStatus.PENDING and event.click_source.endswith("email_sha256")
