"""/metrics under `kwai-bridge serve --with-worker`: two gunicorn workers (one killed
halfway and replaced) and the dispatcher count into one multiprocess directory, and a
scrape shows exactly what was sent."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest
import requests
from sqlalchemy import create_engine, func, select

from kwai_bridge.db import events
from tests.conftest import fixture_bytes
from tests.metrics_text import samples, total, value
from tests.serving import SECRETS, SHOPS, Served, bridge_env, cli_command, free_port, run_cli, store_entry, write_stores
from tests.signing import headers_for
from tests.test_supervisor import wait_for

TOKEN = "scrape-token-abcdefghijkl"


def paid_order(order_id: int) -> bytes:
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order.update(id=order_id, test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": f"click-{order_id}"}])
    return json.dumps(order).encode()


def post(served: Served, body: bytes, topic: str = "orders/paid", *, secret: str = SECRETS["shopify"]) -> str:
    headers = headers_for("shopify", topic, shop=SHOPS["shopify"], secret=secret, body=body)
    answer = requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers, timeout=30)
    return answer.json()["status"] if answer.status_code == 200 else str(answer.status_code)


def scrape(served: Served) -> dict:
    answer = requests.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def counting_pids(directory) -> set[int]:
    return {int(m.group(1)) for name in os.listdir(directory) if (m := re.fullmatch(r"counter_(\d+)\.db", name))}


@pytest.mark.slow
def test_metrics_count_exactly_across_two_workers_and_the_dispatcher(tmp_path, database_url, kwai):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier run")  # emptied at start
    env = bridge_env(database_url=database_url, stores=stores, kwai_url=kwai.base_url, METRICS_TOKEN=TOKEN)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    assert run_cli(env, "migrate").returncode == 0
    kwai.fail_next(2, result_code=10001)  # two events Kwai refuses: dead
    served = Served(env, workers=2, extra_args=["--with-worker"]).start(timeout=60)
    try:
        assert requests.get(f"{served.url}/metrics", timeout=30).status_code == 401
        assert 999999 not in counting_pids(directory)
        answers = [post(served, paid_order(1000 + n)) for n in range(6)]
        # kill a worker that counted some of them; gunicorn starts another
        workers = served.web_workers()
        victim = next(iter(counting_pids(directory) & workers))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(served.web_workers() - {victim}) == 2, what="a new gunicorn worker")
        answers += [post(served, paid_order(2000 + n)) for n in range(4)]
        answers.append(post(served, paid_order(1000)))  # the same order again
        answers += [post(served, paid_order(3000 + n), secret="wrong") for n in range(3)]
        answers.append(post(served, b'{"id": 1}', "themes/publish"))  # a topic no adapter knows
        # the unknown topic too is received, and the worker's conversion finds nothing in it
        assert answers.count("received") == 11 and answers.count("duplicate") == 1 and answers.count("401") == 3
        wait_for(lambda: total(scrape(served), "kwai_bridge_kwai_requests_total") >= 10,
                 what="the dispatcher to send all ten", timeout=120)
        found = scrape(served)
        pids = counting_pids(directory)
    finally:
        served.__exit__(None, None, None)

    assert victim in pids and len(pids) >= 3  # the killed worker, its replacement or sibling, the dispatcher
    webhooks = "kwai_bridge_webhooks_total"
    assert value(found, webhooks, platform="shopify", topic="orders/paid", outcome="received") == 10
    assert value(found, webhooks, platform="shopify", topic="orders/paid", outcome="duplicate") == 1
    assert value(found, webhooks, platform="shopify", topic="other", outcome="refused_401") == 3
    assert total(found, webhooks) == 15
    assert total(found, "kwai_bridge_ingest_seconds_count") == 15
    with create_engine(database_url).connect() as conn:
        stored = conn.execute(select(func.count()).select_from(events)).scalar()
    assert total(found, "kwai_bridge_events_created_total") == stored == 10
    assert value(found, "kwai_bridge_events_created_total", event="EVENT_PURCHASE", click_source="attribute") == 10
    assert total(found, "kwai_bridge_kwai_requests_total") == 10
    assert value(found, "kwai_bridge_kwai_requests_total", result="1", status="200") == 8
    assert value(found, "kwai_bridge_kwai_requests_total", result="10001", status="200") == 2
    assert total(found, "kwai_bridge_send_seconds_count") == 10
    assert value(found, "kwai_bridge_outbox_events", status="dead") == 2
    assert value(found, "kwai_bridge_outbox_events", status="pending") == 0
    assert value(found, "kwai_bridge_stores_held") == 0


@pytest.mark.slow
def test_a_worker_apart_serves_its_own_counts_on_metrics_port(tmp_path, sqlite_url, kwai):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=sqlite_url, stores=stores, kwai_url=kwai.base_url, METRICS_TOKEN=TOKEN)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    served = Served(env, workers=1).start(timeout=60)
    worker = subprocess.Popen(cli_command("worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"),
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/metrics"

    def worker_scrape() -> dict:
        try:
            answer = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        except requests.ConnectionError:
            return {}
        return samples(answer.text) if answer.status_code == 200 else {}

    try:
        assert all(post(served, paid_order(4000 + n)) == "received" for n in range(3))
        wait_for(lambda: total(worker_scrape(), "kwai_bridge_kwai_requests_total") == 3, what="three sends",
                 timeout=120)
        assert requests.get(url, timeout=5).status_code == 401
        web = scrape(served)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        served.__exit__(None, None, None)
    assert value(web, "kwai_bridge_webhooks_total", platform="shopify", topic="orders/paid", outcome="received") == 3
    assert total(web, "kwai_bridge_kwai_requests_total") == 0  # the dispatcher's are on its own port
