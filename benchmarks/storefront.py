"""Storefront events through `POST /events` against webhook ingest, in the same run.

wrk (one thread, 16 connections, a new connection per request) cycles through
pre-built requests against `kwai-bridge serve`'s gunicorn on a fresh SQLite database
for each run, alternating:

- webhooks: signed 10.7 KB Shopify `orders/paid` bodies with distinct order and
  delivery ids (what benchmarks/slow_clients.py measures);
- storefront events: what the snippet posts from a shopper's browser (`Origin` one of
  the store's), each with its own event id: three in four product views, one in four
  cart adds with a cart token (those also bind the click to the cart, a third write).

Both go through their limits (the events' counters are set high enough never to refuse).
Target: a storefront event costs no more than a webhook: events per second at least
those of webhooks, on the medians of alternating runs (runs on this shared 2-core
machine vary by about ±10 %, so one run alone says little).

    python benchmarks/storefront.py [--seconds 5] [--repeat 3] [--workers 4]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import SECRET, SHOP  # noqa: E402
from benchmarks.loadgen import build_request  # noqa: E402
from benchmarks.slow_clients import Server, ensure_wrk, throughput, write_requests  # noqa: E402

TARGET = 1.0
ORIGIN = f"https://{SHOP}"


def write_events(path: Path, offset: int, count: int) -> None:
    """`count` storefront event requests with distinct event ids."""
    with path.open("wb") as out:
        for n in range(offset, offset + count):
            body = {"event": "EVENT_CONTENT_VIEW", "event_id": f"pv-bench-{n}", "click_id": f"Bench{n % 997}==",
                    "product_id": "632910392", "variant_id": "808950810", "content_name": "IPod Nano - 8GB",
                    "content_category": "Cult Products", "price": "199.00", "currency": "USD"}
            if n % 4 == 3:
                body.update(event="EVENT_ADD_TO_CART", event_id=f"add-bench-{n}", cart_token=f"cart-{n}",
                            item_count=1, quantity=1)
            out.write(build_request("/events/bench", {"Content-Type": "application/json", "Origin": ORIGIN},
                                    json.dumps(body).encode(), "127.0.0.1"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of a throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are shown")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as workdir:
        stores = Path(workdir) / "stores.toml"
        stores.write_text(f'[[stores]]\nid = "bench"\nplatform = "shopify"\nshop = "{SHOP}"\n'
                          f'webhook_secrets = ["{SECRET}"]\npixel_id = "px"\naccess_token = "tok"\n'
                          "clicks_per_minute = 1000000\n")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KWAI_BRIDGE_STORES": str(stores),
               "KWAI_BRIDGE_LOG_LEVEL": "WARNING", "KWAI_BRIDGE_CLICKS_PER_ADDRESS": "1000000"}
        count = args.seconds * 3000  # more than a run sends: no run comes back to one it sent
        files = {"webhooks": {"warm-up": Path(workdir) / "w-warm.http", "measured": Path(workdir) / "w.http"},
                 "events": {"warm-up": Path(workdir) / "e-warm.http", "measured": Path(workdir) / "e.http"}}
        write_requests(files["webhooks"]["warm-up"], 50_000_000, 3000)
        write_requests(files["webhooks"]["measured"], 60_000_000, count)
        write_events(files["events"]["warm-up"], 50_000_000, 3000)
        write_events(files["events"]["measured"], 60_000_000, count)
        rates: dict[str, list[dict]] = {"webhooks": [], "events": []}
        for r in range(args.repeat):
            for kind in ("webhooks", "events"):
                with Server(workdir, f"{kind}-{r}", None, args.workers, env) as server:
                    rates[kind].append(throughput(wrk, server, files[kind], args))

    def median(kind: str) -> float:
        return statistics.median(run["rate"] for run in rates[kind])

    print(f"\nStorefront events against webhooks: wrk, 1 thread, {args.concurrency} connections, a new connection "
          f"per request, {args.seconds} s, gunicorn x {args.workers}, SQLite WAL FULL, medians of {args.repeat} "
          "alternating runs")
    print(f"{'requests':<34} {'req/s':>8} {'vs webhooks':>12} {'errors':>7}  runs")
    base = median("webhooks")
    labels = {"webhooks": "webhooks (orders/paid, 10.7 KB)", "events": "storefront events (/events)"}
    for kind in ("webhooks", "events"):
        runs = rates[kind]
        print(f"{labels[kind]:<34} {median(kind):>8.0f} {median(kind) / base:>12.2f} "
              f"{sum(run['errors'] for run in runs):>7}  {', '.join(str(round(run['rate'])) for run in runs)}")
    ratio = median("events") / base
    print(f"storefront events / webhooks = {ratio:.2f} (target >= {TARGET:.1f}: an event costs no more than a webhook)")
    errors = sum(run["errors"] for runs in rates.values() for run in runs)
    return 0 if ratio >= TARGET and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
