"""`make demo`: the whole flow offline on loopback, for a newcomer.

A fake Kwai starts, `kwai-bridge serve` starts on a temporary SQLite database with one
store per platform, one signed sample webhook per platform is posted to it, the
dispatcher runs once, and what Kwai received is printed.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import requests

from tests.conftest import fixture_bytes
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, Served, bridge_env, run_cli, store_entry, write_stores
from tests.signing import headers_for


def samples() -> list[tuple[str, str, bytes]]:
    """One paid order per platform, carrying a Kwai click id the way each platform does."""
    shopify = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    shopify.update(test=False, financial_status="paid",
                   note_attributes=[{"name": "kwai_click_id", "value": "demo-shopify-click"}])
    shopline = json.loads(fixture_bytes("shopline/shopline_orders_create.DERIVED_FROM_SDK.json", shop=SHOPS["shopline"]))
    shopline.update(financial_status="paid", landing_site="/?click_id=demo-shopline%2Bclick")
    woo = json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json"))
    woo["meta_data"].append({"id": 1, "key": "_kwai_click_id", "value": "demo-woo-click"})
    return [("shopify", "orders/paid", json.dumps(shopify).encode()),
            ("shopline", "orders/paid", json.dumps(shopline).encode()),
            ("woocommerce", "order.created", json.dumps(woo).encode())]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, FakeKwai() as kwai:
        stores = write_stores(Path(tmp) / "stores.toml", [store_entry(p, f"demo-{p}") for p in SHOPS])
        env = bridge_env(database_url=f"sqlite:///{tmp}/demo.db", stores=stores, kwai_url=kwai.base_url)
        print(f"1. fake Kwai listening at {kwai.base_url}")
        with Served(env, workers=1) as served:
            print(f"2. kwai-bridge serve listening at {served.url}")
            for platform, topic, body in samples():
                url = f"{served.url}/webhooks/{platform}/demo-{platform}"
                headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
                answer = requests.post(url, data=body, headers=headers, timeout=10)
                print(f"3. {platform:<12} {topic:<14} -> HTTP {answer.status_code} {answer.json()}")
        done = run_cli(env, "worker", "--once")
        print(f"4. kwai-bridge worker --once -> {done.stdout.strip() or done.stderr.strip()}")
        print("5. Kwai received:")
        for request in kwai.received:
            fields = dict(request.fields)
            fields["properties"] = json.loads(fields.get("properties") or "{}")
            fields["access_token"] = "***"
            print(json.dumps(fields, indent=2, ensure_ascii=False))
        ok = done.returncode == 0 and len(kwai.successes()) >= len(SHOPS)
        print("demo ok" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
