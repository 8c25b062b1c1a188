"""Stores changing while webhooks flow, across processes: a wrong import or a wrong file
on SIGHUP changes nothing and refuses no webhook; a store created through the admin API is served by every
`kwai-bridge serve` within 5 s and delivered by a worker that started before it."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
import requests

from kwai_bridge.catalog import Catalog
from kwai_bridge.db import make_engine
from kwai_bridge.sealing import make_sealer
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, Served, bridge_env, run_cli, start_worker, store_entry, write_stores
from tests.traffic import Traffic, post_order

pytestmark = pytest.mark.slow

#: How soon the issue promises that every process serves a new store.
WITHIN_SECONDS = 5.0


def catalog_for(database_url: str) -> Catalog:
    return Catalog(make_engine(database_url),
                   sealer=make_sealer(os.environ["KWAI_BRIDGE_SECRET_KEYS"], database_url=""))


def state(catalog: Catalog) -> tuple:
    """Everything a change would move: the generation and each store's version and values."""
    return catalog.generation(), [(r.config, r.version, r.updated_at) for r in catalog.records()]


def wait_until_replaced(served: Served, old: set[int], *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while served.web_workers() & old:
        assert time.monotonic() < deadline, "the old web workers did not stop after SIGHUP"
        time.sleep(0.2)


def test_wrong_import_and_wrong_file_on_sighup_change_nothing_under_traffic(tmp_path, database_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"),
                                                     store_entry("woocommerce", "woo")])
    env = bridge_env(database_url=database_url, stores=stores)
    assert run_cli(env, "migrate").returncode == 0
    wrong = write_stores(tmp_path / "wrong.toml", [store_entry("shopify", "acme", pixel_id=123),
                                                   {**store_entry("woocommerce", "woo"), "platform": "magento"}])
    catalog = catalog_for(database_url)
    before = state(catalog)
    with Served(env, workers=3) as served, Traffic([served.url], "acme") as traffic:
        traffic.wait_for(10)
        refused = run_cli(env, "stores", "import", str(wrong))
        assert refused.returncode == 1 and "nothing imported" in refused.stderr
        assert 'store "acme": pixel_id' in refused.stderr and 'store "woo": platform' in refused.stderr
        traffic.wait_for(10)
        stores.write_text(wrong.read_text())
        old = served.web_workers()
        assert len(old) == 3
        os.kill(served.proc.pid, signal.SIGHUP)
        wait_until_replaced(served, old)
        traffic.wait_for(20)  # all of them answered by the workers started after SIGHUP
    assert state(catalog) == before
    statuses = Counter(answer.status for answer in traffic.answers)
    assert statuses == {200: len(traffic.answers)}, f"every webhook accepted: {statuses}"
    assert "stores file not imported, the database's stores are kept as they are" in served.output()


@pytest.mark.postgres
def test_a_new_store_is_served_by_every_process_and_delivered_by_an_older_worker(tmp_path, postgres_url):
    with FakeKwai() as kwai:
        env = bridge_env(database_url=postgres_url, stores=tmp_path / "none.toml", kwai_url=kwai.base_url,
                         STORES="")
        assert run_cli(env, "migrate").returncode == 0
        start_worker(env)
        with Served(env, workers=2) as first, Served(env, workers=2) as second:
            urls = [first.url, second.url]
            assert [post_order(url, "fresh").status for url in urls] == [404, 404]
            # An agency's admin creates the store through the admin API of the first process.
            assert run_cli(env, "users", "add", "ops@agency.example", "--role", "admin").returncode == 0
            token = run_cli(env, "tokens", "create", "ops@agency.example", secrets_on_stdout=True).stdout.strip()
            answer = requests.post(f"{first.url}/api/v1/stores", headers={"Authorization": f"Bearer {token}"},
                                   json={"id": "fresh", "platform": "shopify", "shop": SHOPS["shopify"],
                                         "webhook_secrets": [SECRETS["shopify"]], "pixel_id": "pixel-fresh",
                                         "access_token": "token-shopify"}, timeout=10)
            assert answer.status_code == 201, answer.text
            created = time.monotonic()
            answers = []
            # Until each process has accepted three webhooks posted 5 s or more after the store was created.
            while min(sum(1 for a in answers if a.url == url and a.started >= created + WITHIN_SECONDS
                          and a.status == 200) for url in urls) < 3:
                assert time.monotonic() < created + 120, f"no end of refusals: {Counter(a.status for a in answers)}"
                answers.extend(post_order(url, "fresh") for url in urls)
                time.sleep(0.1)  # a few hundred orders in all, however busy the machine
        late = [a.status for a in answers if a.started >= created + WITHIN_SECONDS]
        assert set(late) == {200}, "a webhook posted 5 s after the store was created was refused"
        assert {a.status for a in answers} <= {200, 404}
        accepted = sorted(a.click_id for a in answers if a.status == 200)
        assert kwai.wait_for(len(accepted), timeout=180), "the worker started first did not deliver them"
        assert sorted(r.fields["clickid"] for r in kwai.successes()) == accepted
        assert {r.fields["pixelId"] for r in kwai.successes()} == {"pixel-fresh"}
