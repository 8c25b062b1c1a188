"""`make demo`: the whole flow offline on loopback, for a newcomer.

A fake Kwai starts, `kwai-bridge serve` starts on a temporary SQLite database with one
store per platform, one signed sample webhook per platform is posted to it, the
dispatcher runs once, and what Kwai received is printed. Then the fake Admin APIs of the
three platforms start (tests/fake_platforms.py), each listing the order its webhook
brought, a paid order whose webhook never came and an unpaid one; the stores get their
API credentials, `kwai-bridge stores connect` creates their webhook subscriptions (and,
run again, creates nothing), `kwai-bridge reconcile` recovers the order whose webhook never
came, the dispatcher sends it, and `kwai-bridge reconcile report --json` accounts for every
paid order.
"""
from __future__ import annotations

import json
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from tests.conftest import fixture_bytes
from tests.fake_kwai import FakeKwai
from tests.fake_platforms import FAKES, FakePlatform, api_entry, sample_order
from tests.serving import SECRETS, SHOPS, Served, bridge_env, free_port, run_cli, store_entry, write_stores
from tests.signing import headers_for

#: The order id of the paid order whose webhook never came, on every fake platform.
MISSED_ORDER = 7001


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


def fill(fake: FakePlatform, delivered_id: Any, *, now: datetime) -> dict[Any, str]:
    """The store's orders as its Admin API lists them, each with what it stands for: the
    paid one whose webhook came (step 3), paid ones whose webhook never came (one with a
    Kwai click id, one without: it waits for one), and one not paid yet."""
    orders = {
        int(delivered_id): ("its webhook came", True, f"demo-{fake.name}-click"),
        MISSED_ORDER: ("paid, its webhook never came", True, f"demo-{fake.name}-missed"),
        MISSED_ORDER + 1: ("paid, no webhook and no click id", True, None),
        MISSED_ORDER + 2: ("not paid", False, f"demo-{fake.name}-unpaid"),
    }
    for minutes, (order_id, (_, paid, click)) in enumerate(orders.items()):
        fake.add_order(sample_order(fake.name, fake.shop, order_id=order_id, paid=paid, click_id=click,
                                    updated=now - timedelta(minutes=len(orders) - minutes)))
    return {order_id: what for order_id, (what, _, _) in orders.items()}


def cli_json(env: dict[str, str], *args: str) -> Any:
    """Run `kwai-bridge ARGS` and read the JSON it prints (None, and its error shown, if it fails)."""
    done = run_cli(env, *args)
    if done.returncode != 0:
        print(f"   kwai-bridge {' '.join(args)} failed: {done.stdout.strip()} {done.stderr.strip()}")
        return None
    return json.loads(done.stdout)


def webhooks(served: Served, env: dict[str, str], kwai: FakeKwai,
             sent: list[tuple[str, str, bytes]]) -> bool:
    """Steps 3 to 5: one signed webhook per platform, the dispatcher once, what Kwai received."""
    for platform, topic, body in sent:
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
    return done.returncode == 0 and len(kwai.successes()) >= len(SHOPS)


def admin_apis(env: dict[str, str], stores_path: Path, fakes: dict[str, FakePlatform],
               sent: list[tuple[str, str, bytes]]) -> bool:
    """Steps 6 to 12: credentials, connect twice, reconcile, dispatch, the accuracy report."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    delivered = {platform: json.loads(body)["id"] for platform, _, body in sent}
    for platform, fake in fakes.items():
        orders = fill(fake, delivered[platform], now=now)
        print(f"6. fake {platform} Admin API at {fake.base}, its orders:")
        for order_id, what in orders.items():
            print(f"     {order_id}: {what}")
    # the same stores, now with their Admin API credentials and addresses
    write_stores(stores_path, [api_entry(fake, f"demo-{platform}") for platform, fake in fakes.items()])
    imported = cli_json(env, "stores", "import", str(stores_path))
    print(f"7. kwai-bridge stores import stores.toml (credentials added) -> {json.dumps(imported)}")
    ok = imported is not None and sorted(imported["updated"]) == sorted(f"demo-{p}" for p in fakes)
    for platform, fake in fakes.items():
        first = cli_json(env, "stores", "connect", f"demo-{platform}")
        print(f"8. kwai-bridge stores connect demo-{platform} -> {json.dumps(first)}")
        ok = ok and first is not None and bool(first["created"]) and first["errors"] == [] \
            and len(fake.subscriptions) == len(first["created"])
    for platform, fake in fakes.items():
        again = cli_json(env, "stores", "connect", f"demo-{platform}")
        if again is not None:
            print(f"9. kwai-bridge stores connect demo-{platform}, again -> created {again['created']}, "
                  f"{len(again['ok'])} ok")
        ok = ok and again is not None and again["created"] == again["errors"] == [] and bool(again["ok"])
    passed = cli_json(env, "reconcile")
    print(f"10. kwai-bridge reconcile -> {json.dumps(passed)}")
    done = run_cli(env, "worker", "--once")
    print(f"11. kwai-bridge worker --once -> {done.stdout.strip() or done.stderr.strip()}")
    rows = cli_json(env, "reconcile", "report", "--json") or []
    print("12. kwai-bridge reconcile report --json (paid_orders - sent = the sum of the reasons):")
    for row in rows:
        print(f"    {json.dumps(row)}")
    return ok and passed is not None and passed["recovered_events"] >= 1 and done.returncode == 0 \
        and len(rows) >= len(fakes) \
        and all(r["paid_orders"] - r["sent"] == sum(r["reasons"].values()) for r in rows)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, FakeKwai() as kwai, ExitStack() as running:
        stores = write_stores(Path(tmp) / "stores.toml", [store_entry(p, f"demo-{p}") for p in SHOPS])
        port = free_port()  # known before serve starts: it is the address connect subscribes
        env = bridge_env(database_url=f"sqlite:///{tmp}/demo.db", stores=stores, kwai_url=kwai.base_url,
                         PUBLIC_URL=f"http://127.0.0.1:{port}")  # loopback: allowed for tests and demos
        print(f"1. fake Kwai listening at {kwai.base_url}")
        served = running.enter_context(Served(env, workers=1, port=port))
        print(f"2. kwai-bridge serve listening at {served.url}")
        sent = samples()
        ok = webhooks(served, env, kwai, sent)
        fakes = {name: running.enter_context(cls()) for name, cls in FAKES.items()}
        ok = admin_apis(env, stores, fakes, sent) and ok
        print("demo ok" if ok else "demo FAILED")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
