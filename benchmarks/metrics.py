"""Metrics: ingest throughput with metrics on (prometheus-client's multiprocess mode, as
`kwai-bridge serve` runs it) against metrics off, and the time of a /metrics scrape, in
the same run.

- Throughput: wrk (one thread, 16 connections, a new connection per request) cycling
  through pre-signed orders with distinct ids, against gunicorn with `kwai-bridge serve`'s
  settings, alternating on and off runs on fresh SQLite databases. Target: on >= 0.95 x off
  (medians; runs on this shared 2-core machine vary by about +-10 %).
- Scrape: GET /metrics, 50 times, on the last "on" server once its run is over (the
  counters of every worker, and the backlog read from a database holding every event of
  that run). Target: median under 50 ms.

    python benchmarks/metrics.py [--seconds 5] [--repeat 3] [--workers 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import SECRET, SHOP  # noqa: E402
from benchmarks.slow_clients import Server, ensure_wrk, throughput, write_requests  # noqa: E402

RATIO_TARGET = 0.95
SCRAPE_TARGET_MS = 50.0


def scrape_times(port: int, count: int) -> tuple[list[float], int, int]:
    """Milliseconds of `count` scrapes, the size of the last answer, and the outbox's pending events."""
    times, text = [], ""
    for _ in range(count):
        started = time.perf_counter()
        answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        text = answer.text
    pending = next((int(float(line.split()[-1])) for line in text.splitlines()
                    if line.startswith('kwai_bridge_outbox_events{status="pending"}')), 0)
    return times, len(text), pending


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of a throughput run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each; medians are shown")
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    wrk = ensure_wrk()
    rates: dict[str, list[dict]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as workdir:
        stores = Path(workdir) / "stores.toml"
        stores.write_text(f'[[stores]]\nid = "bench"\nplatform = "shopify"\nshop = "{SHOP}"\n'
                          f'webhook_secrets = ["{SECRET}"]\npixel_id = "px"\naccess_token = "tok"\n')
        base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        base.update({"PYTHONPATH": str(ROOT), "KWAI_BRIDGE_STORES": str(stores), "KWAI_BRIDGE_LOG_LEVEL": "WARNING"})
        files = {"warm-up": Path(workdir) / "warm-up.http", "measured": Path(workdir) / "measured.http"}
        write_requests(files["warm-up"], 50_000_000, 3000)
        write_requests(files["measured"], 60_000_000, args.seconds * 3000)
        scrapes: list[float] = []
        size = pending = 0
        for r in range(args.repeat):
            for name in ("off", "on"):
                env = {**base, "KWAI_BRIDGE_METRICS": name}
                if name == "on":  # as `kwai-bridge serve` sets it up
                    directory = Path(workdir) / f"prometheus-{r}"
                    directory.mkdir()
                    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
                with Server(workdir, f"{name}-{r}", None, args.workers, env) as server:
                    rates[name].append(throughput(wrk, server, files, args))
                    if name == "on" and r == args.repeat - 1:
                        scrapes, size, pending = scrape_times(server.port, args.scrapes)

    def median(rows: list[dict]) -> float:
        return statistics.median(row["rate"] for row in rows)

    print(f"\nIngest throughput with metrics on and off: wrk, 1 thread, {args.concurrency} connections, a new "
          f"connection per request, {args.seconds} s, gunicorn x {args.workers}, SQLite WAL FULL; medians of "
          f"{args.repeat} alternating runs")
    print(f"{'metrics':<8} {'req/s':>8} {'errors':>7}  runs")
    for name in ("off", "on"):
        runs = rates[name]
        print(f"{name:<8} {median(runs):>8.0f} {sum(r['errors'] for r in runs):>7}  "
              f"{', '.join(str(round(r['rate'])) for r in runs)}")
    ratio = median(rates["on"]) / median(rates["off"])
    print(f"on / off = {ratio:.3f} (target >= {RATIO_TARGET})")
    scrape = statistics.median(scrapes)
    print(f"\n/metrics scrape ({args.scrapes} in a row, {args.workers} workers' files, {pending:,} pending events, "
          f"{size:,} bytes): median {scrape:.1f} ms, max {max(scrapes):.1f} ms (target median < {SCRAPE_TARGET_MS:.0f} ms)")
    errors = sum(r["errors"] for runs in rates.values() for r in runs)
    return 0 if ratio >= RATIO_TARGET and scrape < SCRAPE_TARGET_MS and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
