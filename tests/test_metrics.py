"""Prometheus metrics in one process: labels from closed sets, the backlog read from the
database at scrape time, the token, and metrics turned off. The counts across gunicorn's
workers and the dispatcher are in tests/test_metrics_serve.py."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from kwai_bridge import metrics
from kwai_bridge.db import EventStatus, deliveries, events, make_engine, migrate
from kwai_bridge.kwai.client import Delivered, SendResult
from server import create_app
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.metrics_text import metric_names, samples, total, value
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
ORDER = fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"])
TOKEN = "metrics-token-0123456789"


@pytest.fixture
def app_for(tmp_path, database_url):
    def build(**settings):
        migrate(make_engine(database_url))
        config = {"DATABASE_URL": database_url, "STORES": str(write_stores(
            tmp_path / "stores.toml", [store_entry("shopify", "acme"), store_entry("woocommerce", "woo")])),
                  **settings}
        return create_app(config, clock=lambda: NOW)
    return build


def scrape(client, **headers) -> dict:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.content_type.startswith("text/plain")
    return samples(answer.text)


def post(client, path: str, topic: str, body: bytes = ORDER, **extra):
    headers = headers_for("shopify", topic, shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body)
    headers.update(extra)
    return client.post(path, data=body, headers=headers)


@pytest.mark.parametrize("function, argument, label", [
    (metrics.platform_label, ("shopify",), "shopify"),
    (metrics.platform_label, ("wix",), "other"),
    (metrics.topic_label, ("shopify", "orders/paid"), "orders/paid"),
    (metrics.topic_label, ("shopify", "customers/redact"), "customers/redact"),
    (metrics.topic_label, ("woocommerce", "order.created"), "order.created"),
    (metrics.topic_label, ("shopify", "order.created"), "other"),
    (metrics.topic_label, ("shopify", "orders/1234"), "other"),
    (metrics.topic_label, ("wix", "orders/paid"), "other"),
    (metrics.topic_label, ("shopify", None), "other"),
    (metrics.outcome_label, (200, "queued"), "queued"),
    (metrics.outcome_label, (200, "received"), "received"),
    (metrics.outcome_label, (200, "something new"), "other"),
    (metrics.outcome_label, (401, "signature does not match"), "refused_401"),
    (metrics.outcome_label, (404, "unknown store"), "refused_404"),
    (metrics.result_label, (1,), "1"),
    (metrics.result_label, (10006,), "10006"),
    (metrics.result_label, (424242,), "other"),
    (metrics.result_label, (None,), "none"),
    (metrics.status_label, (503,), "503"),
    (metrics.status_label, (None,), "none"),
    (metrics.status_label, (7,), "other"),
])
def test_labels_come_from_closed_sets(function, argument, label):
    assert function(*argument) == label


@pytest.mark.parametrize("header, token, allowed", [
    (None, "", True),
    ("Bearer abc", "", True),
    (None, TOKEN, False),
    (f"Bearer {TOKEN}", TOKEN, True),
    (f"bearer {TOKEN}", TOKEN, True),
    (f"Basic {TOKEN}", TOKEN, False),
    (f"Bearer {TOKEN}x", TOKEN, False),
    ("Bearer ", TOKEN, False),
])
def test_authorized_wants_the_bearer_token_when_one_is_set(header, token, allowed):
    assert metrics.authorized(header, token) is allowed


def test_webhooks_and_events_are_counted_by_label(app_for):
    client = app_for().test_client()
    before = scrape(client)
    assert post(client, "/webhooks/shopify/acme", "orders/create").status_code == 200
    assert post(client, "/webhooks/shopify/acme", "orders/create").status_code == 200  # the same again
    bad = post(client, "/webhooks/shopify/acme", "orders/create", **{"X-Shopify-Hmac-Sha256": "AAAA"})
    assert bad.status_code == 401
    convert(client.application)  # the worker's converter counts the events it makes
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    webhooks = "kwai_bridge_webhooks_total"
    assert grew(webhooks, platform="shopify", topic="orders/create", outcome="received") == 1
    assert grew(webhooks, platform="shopify", topic="orders/create", outcome="duplicate") == 1
    assert grew(webhooks, platform="shopify", topic="other", outcome="refused_401") == 1
    assert total(after, "kwai_bridge_ingest_seconds_count") - total(before, "kwai_bridge_ingest_seconds_count") == 3
    created = total(after, "kwai_bridge_events_created_total") - total(before, "kwai_bridge_events_created_total")
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    with engine.connect() as conn:
        names = [row.event_name for row in conn.execute(select(events.c.event_name))]
    assert created == len(names) > 0
    for name in set(names):
        assert total(after, "kwai_bridge_events_created_total", event=name) - total(
            before, "kwai_bridge_events_created_total", event=name) == names.count(name)


def test_strangers_create_no_series(app_for):
    client = app_for().test_client()
    before = scrape(client)
    for n in range(20):
        client.post(f"/webhooks/platform{n}/store{n}", data=b"{}", headers={"X-Shopify-Topic": f"orders/{n}"})
        post(client, f"/webhooks/shopify/nobody{n}", f"orders/{n}")
        post(client, "/webhooks/shopify/acme", f"topic/{n}")
    after = scrape(client)
    new = {key for key in after if key not in before}
    labels = {dict(have).get("topic") for _, have in new} | {dict(have).get("platform") for _, have in new}
    assert labels <= {None, "other", "shopify"}
    # and no label names a thing that could hold an order id or a click id
    names = {name for _, have in after for name, _ in have}
    assert names <= {"platform", "topic", "outcome", "event", "click_source", "result", "status", "le"}


def test_the_backlog_is_read_from_the_database_at_scrape(app_for):
    client = app_for().test_client()
    engine = client.application.extensions["kwai_bridge.runtime"].engine
    due = NOW - timedelta(minutes=20)
    rows = [("pending", due), ("pending", NOW + timedelta(hours=1)), ("held", None), ("held", None),
            ("dead", None), ("sent", None)]
    with engine.begin() as conn:
        for n, (status, when) in enumerate(rows):
            conn.execute(events.insert().values(
                store_id="acme" if n != 3 else "woo", platform="shopify", business_key=f"k{n}",
                event_name="EVENT_PURCHASE", status=status, event="{}", attempts=0, next_attempt_at=when,
                last_result=10006 if status == EventStatus.HELD else None, created_at=NOW, updated_at=NOW))
        # two deliveries waiting for the worker's conversion, one converted
        for n, (outcome, minutes) in enumerate([("received", 7), ("received", 1), ("queued", 30)]):
            conn.execute(deliveries.insert().values(
                store_id="acme", platform="shopify", topic="orders/paid", delivery_key=f"d{n}",
                received_at=NOW - timedelta(minutes=minutes), outcome=outcome))
    found = scrape(client)
    assert value(found, "kwai_bridge_deliveries_received") == 2
    assert value(found, "kwai_bridge_deliveries_received_oldest_seconds") == 7 * 60
    assert value(found, "kwai_bridge_outbox_events", status="pending") == 2
    assert value(found, "kwai_bridge_outbox_events", status="held") == 2
    assert value(found, "kwai_bridge_outbox_events", status="dead") == 1
    assert ("kwai_bridge_outbox_events", (("status", "sent"),)) not in found
    assert value(found, "kwai_bridge_outbox_oldest_due_seconds") == 20 * 60
    assert value(found, "kwai_bridge_stores_held") == 2


def test_the_token_is_asked_for_when_set(app_for):
    client = app_for(METRICS_TOKEN=TOKEN).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]
    assert TOKEN not in refused.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0000000"}).status_code == 401
    assert scrape(client, Authorization=f"Bearer {TOKEN}")


def test_metrics_off_counts_nothing_and_answers_404(app_for):
    on = app_for().test_client()
    before = scrape(on)
    off = app_for(METRICS="off").test_client()
    assert off.get("/metrics").status_code == 404
    assert post(off, "/webhooks/shopify/acme", "orders/paid").status_code == 200
    on = app_for().test_client()
    assert total(scrape(on), "kwai_bridge_webhooks_total") == total(before, "kwai_bridge_webhooks_total")


# -- deploy/: the Grafana dashboard and the Prometheus rules ----------------------------
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    found += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return found


def test_the_dashboard_and_the_alert_rules_use_only_metrics_a_scrape_shows(app_for):
    client = app_for().test_client()
    post(client, "/webhooks/shopify/acme", "orders/create")
    convert(client.application)
    metrics.kwai_request(SendResult(Delivered(), 200, '{"result":1}'), seconds=0.1)
    answer = client.get("/metrics")
    shown = metric_names(answer.text)
    expressions = _expressions()
    assert len(expressions) >= 10
    used = {name for expr in expressions for name in re.findall(r"\bkwai_bridge_[a-z_]+", expr)}
    assert used and used <= shown, f"not on /metrics: {sorted(used - shown)}"
    # every series a scrape shows has a panel
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in shown}
    assert families <= {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
