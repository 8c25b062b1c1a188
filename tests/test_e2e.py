"""End to end over loopback: `kwai-bridge serve` receives signed webhooks, `kwai-bridge
worker` delivers them, the fake Kwai checks what arrives. Includes the web process
killed with SIGKILL while it answers."""
from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import requests

from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS, Served, bridge_env, run_cli, store_entry, write_stores
from tests.signing import headers_for

pytestmark = pytest.mark.slow


def paid_shopify_order(order_id: int, click_id: str) -> bytes:
    """The docs' orders/create sample, changed: not a test order, paid, with our cart attribute."""
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order.update(id=order_id, test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": click_id}])
    return json.dumps(order).encode()


def post(url: str, platform: str, topic: str, body: bytes, **kw) -> requests.Response:
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body, **kw)
    return requests.post(url, data=body, headers=headers, timeout=10)


@pytest.fixture
def env(tmp_path, sqlite_url, kwai):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"),
                                                      store_entry("woocommerce", "woo")])
    return bridge_env(database_url=sqlite_url, stores=stores, kwai_url=kwai.base_url)


def test_signed_webhook_reaches_kwai_with_the_exact_body(env, kwai):
    body = paid_shopify_order(820982911946154508, "Kw.clk+id/=")
    with Served(env) as served:
        url = f"{served.url}/webhooks/shopify/acme"
        answers = [post(url, "shopify", "orders/paid", body, delivery_id="wh-1") for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        # A second subscription to orders/updated delivers the same payment again.
        assert post(url, "shopify", "orders/updated", body, delivery_id="wh-2").status_code == 200
    done = run_cli(env, "worker", "--once")
    assert done.returncode == 0, done.stderr
    (request,) = kwai.received
    fields = request.fields
    assert {k: v for k, v in fields.items() if k != "properties"} == {
        "access_token": "token-shopify", "clickid": "Kw.clk+id/=", "event_name": "EVENT_PURCHASE",
        "pixelId": "pixel-shopify", "testFlag": False, "trackFlag": False, "is_attributed": 1,
        "mmpcode": "PL", "pixelSdkVersion": "9.9.9", "third_party": "shopify",
        "currency": "USD", "value": "404.95",
    }
    properties = json.loads(fields["properties"])
    assert properties["content_type"] == "product"
    assert properties["event_timestamp"] > 0
    assert properties["contents"][0]["quantity"] >= 1


def test_web_process_killed_while_answering_loses_no_acknowledged_order(env, kwai):
    served = Served(env, workers=2).start()
    acked: list[int] = []
    refused: list[int] = []
    stop = threading.Event()

    def sender(offset: int) -> None:
        for n in range(offset, offset + 400, 2):
            if stop.is_set():
                refused.extend(range(n, offset + 400, 2))
                return
            try:
                answer = post(f"{served.url}/webhooks/shopify/acme", "shopify", "orders/paid",
                              paid_shopify_order(10_000 + n, f"click-{n}"), delivery_id=f"wh-{n}")
                (acked if answer.status_code == 200 else refused).append(n)
            except requests.RequestException:
                refused.append(n)

    threads = [threading.Thread(target=sender, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    try:
        while len(acked) < 40:
            threading.Event().wait(0.01)
        served.kill()  # SIGKILL the master and its workers mid-traffic
        stop.set()
    finally:
        for t in threads:
            t.join(timeout=60)
    # The platform retries what was not acknowledged, against the restarted process.
    with Served(env, workers=2) as again:
        for n in sorted(refused):
            answer = post(f"{again.url}/webhooks/shopify/acme", "shopify", "orders/paid",
                          paid_shopify_order(10_000 + n, f"click-{n}"), delivery_id=f"wh-{n}")
            assert answer.status_code == 200
    done = run_cli(env, "worker", "--once")
    assert done.returncode == 0, done.stderr
    delivered = Counter(r.fields["clickid"] for r in kwai.successes())
    assert {f"click-{n}" for n in acked} <= set(delivered), "an acknowledged order was lost"
    assert set(delivered) == {f"click-{n}" for n in acked + refused}
    assert max(delivered.values()) == 1, "a purchase was counted twice"
