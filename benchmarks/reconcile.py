"""Reconciling a store with 100,000 orders in the window: the fake WooCommerce REST API on
loopback (tests/fake_platforms.py, 250 orders a page), SQLite with the service's
durability, each pass in its own process (`kwai_bridge.reconcile.Reconciler`, as the
worker runs it), which reports its own peak RSS.

Printed, all measured in this run:
- baseline: listing the same pages without doing anything with them (orders/s);
- the first pass, which recovers every order (no webhook came): orders/s and peak RSS;
- the same first pass over 10,000 orders: peak RSS, which the 100,000-order pass must
  not exceed by more than MEMORY_SLACK (pages are streamed, not collected);
- a pass that finds nothing new (every order known): seconds and orders/s.

Targets: peak RSS(100,000) <= 1.2 x peak RSS(10,000) + 16 MB; the no-news pass at least
NO_NEWS_SHARE of the listing's rate (each order is converted, in memory, to know its
business keys; the outbox is asked once a page which of them it has).

    python benchmarks/reconcile.py [--orders 100000] [--small 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = 250
MEMORY_RATIO, MEMORY_SLACK_KB = 1.2, 16 * 1024
NO_NEWS_SHARE = 0.3
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def child(args: argparse.Namespace) -> None:
    """One pass (or, with --list, the listing alone) in this process; print the figures."""
    from kwai_bridge.platforms import client_for
    from kwai_bridge.reconcile import Reconciler
    from kwai_bridge.runtime import Runtime, build_pipeline

    runtime = Runtime.from_env(os.environ, migrate=True)
    store = runtime.registry.get("bench")
    since = NOW - timedelta(days=30)
    started = time.perf_counter()
    if args.mode == "list":
        seen = sum(len(p.orders) for p in client_for(store, page_size=PAGE).orders(since=since))
        recovered = 0
    else:
        report = Reconciler(runtime.engine, build_pipeline(runtime), page_size=PAGE).run([store], now=NOW, since=since)
        assert not report.errors, report.errors
        seen, recovered = report.orders_seen, report.recovered_events
    print(json.dumps({"orders": seen, "recovered": recovered, "seconds": time.perf_counter() - started,
                      "maxrss_kb": peak_rss_kb()}))


def peak_rss_kb() -> int:
    """This process's peak RSS since it was exec'd (VmHWM). Not ru_maxrss: Linux carries
    that across exec from the forked parent, here the one holding the fake's orders."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(env: dict[str, str], mode: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{mode} pass failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def world(fake, count: int, folder: Path) -> dict[str, str]:
    """`count` orders in `fake`, half with a click id; a database with the store, connected."""
    from kwai_bridge.links import CONNECTED, Links
    from kwai_bridge.runtime import Runtime
    from tests.fake_platforms import api_entry, sample_order
    from tests.serving import bridge_env, write_stores

    template = sample_order("woocommerce", fake.shop, order_id=1, updated=NOW)
    for i in range(count):
        order = dict(template, id=10_000 + i, number=str(10_000 + i), order_key=f"wc_order_{i}",
                     date_modified_gmt=(NOW - timedelta(seconds=count - i)).isoformat()[:19])
        order["meta_data"] = [{"id": 1, "key": "_kwai_click_id", "value": f"click-{i}"}] if i % 2 else []
        fake.orders[str(order["id"])] = order
    fake._sorted = None
    stores = write_stores(folder / "stores.toml", [api_entry(fake, "bench")])
    env = bridge_env(database_url=f"sqlite:///{folder / 'bench.db'}", stores=stores, LOG_LEVEL="ERROR")
    runtime = Runtime.from_env(env, migrate=True)
    runtime.import_stores_file()
    Links(runtime.engine).set_status(runtime.registry.get("bench"), CONNECTED, now=NOW)
    runtime.engine.dispose()
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--child", dest="mode", default=None)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return 0
    from tests.fake_platforms import FakeWooCommerce

    print(f"reconcile: WooCommerce fake on loopback, {PAGE} orders a page, SQLite (synchronous FULL)")
    with tempfile.TemporaryDirectory() as tmp, FakeWooCommerce(page_limit=PAGE) as big, \
            FakeWooCommerce(page_limit=PAGE) as small:
        (Path(tmp) / "big").mkdir()
        (Path(tmp) / "small").mkdir()
        env_big = world(big, args.orders, Path(tmp) / "big")
        env_small = world(small, args.small, Path(tmp) / "small")
        listing = run_child(env_big, "list")
        rate = listing["orders"] / listing["seconds"]
        print(f"  baseline, listing only:         {listing['orders']:>7} orders in {listing['seconds']:7.1f} s "
              f"= {rate:8.0f} orders/s")
        first_small = run_child(env_small, "pass")
        first = run_child(env_big, "pass")
        print(f"  first pass, everything new:     {first['orders']:>7} orders in {first['seconds']:7.1f} s "
              f"= {first['orders'] / first['seconds']:8.0f} orders/s, {first['recovered']} events recovered")
        print(f"  peak RSS: {first_small['maxrss_kb'] / 1024:.0f} MB at {args.small} orders, "
              f"{first['maxrss_kb'] / 1024:.0f} MB at {args.orders}")
        again = run_child(env_big, "pass")
        print(f"  a pass that finds nothing new:  {again['orders']:>7} orders in {again['seconds']:7.1f} s "
              f"= {again['orders'] / again['seconds']:8.0f} orders/s ({again['recovered']} recovered), "
              f"{again['orders'] / again['seconds'] / rate:.2f} x the listing")
    failed = []
    if first["maxrss_kb"] > MEMORY_RATIO * first_small["maxrss_kb"] + MEMORY_SLACK_KB:
        failed.append("peak memory grows with the number of orders")
    if again["recovered"] != 0 or first["orders"] != args.orders:
        failed.append("a pass recovered events twice, or missed orders")
    if again["orders"] / again["seconds"] < NO_NEWS_SHARE * rate:
        failed.append(f"the no-news pass is slower than {NO_NEWS_SHARE} x the listing")
    for problem in failed:
        print(f"  TARGET MISSED: {problem}")
    print("  targets met" if not failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
