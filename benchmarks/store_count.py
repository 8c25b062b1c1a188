"""Webhook ingest with 1,000 stores in the database against the same ingest with 1 store,
in the same run: the store a webhook names is found in the snapshot each worker keeps,
so the number of stores must not slow the webhook path.

Each database is migrated and given its stores through `kwai_bridge.catalog.Catalog`
(secrets sealed, as `stores import` or the admin API store them); the bench store is one
of them. Then `kwai-bridge serve`'s gunicorn settings on it, and wrk (one thread, 16
connections, a new connection per request) cycling through pre-signed orders with
distinct order and delivery ids (benchmarks/requests.lua). Medians of alternating runs.
Target: rate with 1,000 stores >= 0.95 x the rate with 1.

    python benchmarks/store_count.py [--seconds 5] [--repeat 3] [--stores 1000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import SECRET, SHOP  # noqa: E402
from benchmarks.slow_clients import Server, ensure_wrk, throughput, write_requests  # noqa: E402
from kwai_bridge.catalog import Catalog  # noqa: E402
from kwai_bridge.config import check_store  # noqa: E402
from kwai_bridge.db import make_engine, migrate  # noqa: E402
from kwai_bridge.sealing import make_sealer, new_key  # noqa: E402

TARGET = 0.95


def populate(url: str, count: int, keys: str) -> None:
    """Migrate the database at `url` and create `count` stores in it, the bench store among them."""
    engine = make_engine(url)
    migrate(engine)
    catalog = Catalog(engine, sealer=make_sealer(keys, database_url=url))
    now = datetime.now(timezone.utc)
    entries = [{"id": "bench", "platform": "shopify", "shop": SHOP, "webhook_secrets": [SECRET],
                "pixel_id": "px", "access_token": "tok-bench-0000"}]
    entries += [{"id": f"shop-{n:04d}", "platform": ("shopify", "shopline", "woocommerce")[n % 3],
                 "shop": (f"s{n:04d}.myshopify.com", f"s{n:04d}.myshopline.com", f"https://s{n:04d}.example")[n % 3],
                 "webhook_secrets": [f"secret-{n:04d}-abcdef"], "pixel_id": f"px{n}",
                 "access_token": f"tok-{n:04d}-abcdef"} for n in range(1, count)]
    for entry in entries:
        catalog.create(check_store(entry), actor="bench", now=now)
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are shown")
    parser.add_argument("--stores", type=int, default=1000)
    args = parser.parse_args()
    wrk = ensure_wrk()
    keys = os.environ.get("KWAI_BRIDGE_SECRET_KEYS") or new_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWAI_BRIDGE_")}
    env.update({"PYTHONPATH": str(ROOT), "KWAI_BRIDGE_LOG_LEVEL": "WARNING", "KWAI_BRIDGE_SECRET_KEYS": keys})
    counts = (1, args.stores)
    rates: dict[int, list[dict]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as workdir:
        files = {"warm-up": Path(workdir) / "warm-up.http", "measured": Path(workdir) / "measured.http"}
        write_requests(files["warm-up"], 50_000_000, 3000)
        write_requests(files["measured"], 60_000_000, args.seconds * 3000)
        for r in range(args.repeat):
            for n in counts:
                name = f"stores-{n}-{r}"
                populate(f"sqlite:///{workdir}/{name}.db", n, keys)
                with Server(workdir, name, None, args.workers, env) as server:
                    rates[n].append(throughput(wrk, server, files, args))
    median = {n: statistics.median(r["rate"] for r in rates[n]) for n in counts}
    print(f"\nIngest by number of stores in the database: wrk, 1 thread, {args.concurrency} connections, "
          f"a new connection per request, {args.seconds} s, gunicorn x {args.workers}, SQLite; "
          f"medians of {args.repeat} alternating runs")
    print(f"{'stores':>7} {'req/s':>8} {'vs 1 store':>11} {'errors':>7}  runs")
    for n in counts:
        print(f"{n:>7} {median[n]:>8.0f} {median[n] / median[1]:>11.2f} {sum(r['errors'] for r in rates[n]):>7}  "
              f"{', '.join(str(round(r['rate'])) for r in rates[n])}")
    ratio = median[args.stores] / median[1]
    print(f"{args.stores} stores / 1 store = {ratio:.2f} (target >= {TARGET})")
    errors = sum(r["errors"] for runs in rates.values() for r in runs)
    return 0 if ratio >= TARGET and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
