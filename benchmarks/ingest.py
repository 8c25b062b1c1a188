"""Webhook ingest under `kwai-bridge serve`, beside two baselines under the same gunicorn
settings, in the same run:

- a minimal durable receiver (read body, check HMAC, insert the raw body into SQLite
  with the same durability), and
- a bare Flask route that only reads the body.

Body: the Shopify docs' order sample (about 15 KB) made paid, with a click id, a new order
id and delivery id per request, signed. For each target: requests/s at saturation (closed
loop, one new connection per request), then p50/p99 latency in open loop at half that rate.
Targets: at least 0.7 of the durable receiver's rate; p99 at most 25 ms at half load.

    python benchmarks/ingest.py [--seconds 6] [--workers 4] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import build_request, closed_loop, open_loop  # noqa: E402
from kwai_bridge.web.serving import gunicorn_options  # noqa: E402

SECRET = "bench-shopify-secret"
SHOP = "bench.myshopify.com"
RATIO_TARGET = 0.7
P99_TARGET_MS = 25.0


def order_template() -> bytes:
    sample = (ROOT / "tests/fixtures/shopify/shopify_orders_create.json").read_bytes()
    # the docs' example shop made the bench shop: a body naming another shop is refused
    order = json.loads(sample.replace(b"jsmith.myshopify.com", SHOP.encode()))
    order.update(id=999999999999, test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": "bench-click-999999999999"}])
    return json.dumps(order, separators=(",", ":")).encode()


def request_factory(port: int, offset: int):
    template = order_template()
    host = f"127.0.0.1:{port}"

    def make(n: int) -> bytes:
        order_id = str(offset + n).rjust(12, "1").encode()
        body = template.replace(b"999999999999", order_id)
        signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/paid",
                   "X-Shopify-Shop-Domain": SHOP, "X-Shopify-Hmac-Sha256": signature,
                   "X-Shopify-Webhook-Id": f"bench-{offset + n}"}
        return build_request("/webhooks/shopify/bench", headers, body, host)

    return make, len(template)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return proc
        except requests.RequestException:
            time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"{command} did not start")


def gunicorn_command(app: str, port: int, workers: int, worker_class: str | None = None) -> list[str]:
    """`python -m gunicorn` on `app` with the settings `kwai-bridge serve` applies
    (kwai_bridge.web.serving: worker class, timeouts, no access log), or another
    `worker_class`."""
    from gunicorn.config import Config

    options = gunicorn_options(host="127.0.0.1", port=port, workers=workers)
    del options["wsgi_app"]
    if worker_class:
        options["worker_class"] = worker_class
    settings = Config().settings
    command = [sys.executable, "-m", "gunicorn"]
    for name, value in options.items():
        if value is not None and not callable(value):  # a hook (child_exit) has no flag
            command += [next(flag for flag in settings[name].cli if flag.startswith("--")), str(value)]
    return command + [app]


def measure(name: str, command: list[str], env: dict[str, str], port: int, args) -> dict:
    proc = start(command, env, port)
    try:
        make, size = request_factory(port, 0)
        closed_loop("127.0.0.1", port, make, concurrency=args.concurrency, seconds=1.0)  # warm-up
        make, size = request_factory(port, 10_000_000)
        saturated = closed_loop("127.0.0.1", port, make, concurrency=args.concurrency, seconds=args.seconds)
        make, size = request_factory(port, 20_000_000)
        half = open_loop("127.0.0.1", port, make, rate=saturated.rate / 2, seconds=args.seconds)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return {"name": name, "size": size, "rate": saturated.rate, "errors": saturated.errors + half.errors,
            "half_rate": half.rate, "p50": half.percentile(50) * 1000, "p99": half.percentile(99) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each target; medians are shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        stores = Path(workdir) / "stores.toml"
        stores.write_text(f'[[stores]]\nid = "bench"\nplatform = "shopify"\nshop = "{SHOP}"\n'
                          f'webhook_secrets = ["{SECRET}"]\npixel_id = "px"\naccess_token = "tok"\n')
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KWAI_BRIDGE_STORES": str(stores),
               "KWAI_BRIDGE_LOG_LEVEL": "WARNING", "BENCH_SECRET": SECRET}
        targets = [
            ("kwai-bridge serve", lambda port: [sys.executable, "-m", "kwai_bridge.cli", "serve", "--host", "127.0.0.1",
                                                "--port", str(port), "--workers", str(args.workers)],
             lambda r: {"KWAI_BRIDGE_DATABASE_URL": f"sqlite:///{workdir}/bridge-{r}.db"}),
            ("durable receiver", lambda port: gunicorn_command("benchmarks.baselines:durable_app()", port,
                                                               args.workers),
             lambda r: {"BENCH_SQLITE_PATH": f"{workdir}/durable-{r}.db"}),
            ("bare Flask route", lambda port: gunicorn_command("benchmarks.baselines:bare_app()", port,
                                                               args.workers), lambda r: {}),
        ]
        # Alternate the targets and keep medians: on a small shared machine one run of
        # any of them can be off by a fifth or more.
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in targets}
        for r in range(args.repeat):  # a fresh database each run, so no delivery is a repeat
            for name, command, extra in targets:
                port = free_port()
                runs[name].append(measure(name, command(port), {**env, **extra(r)}, port, args))
        results = [{key: (statistics.median(r[key] for r in rows) if key not in ("name", "size") else rows[0][key])
                    for key in rows[0]} for rows in runs.values()]
    ours, durable = results[0], results[1]
    worker_class = gunicorn_options()["worker_class"].rpartition(".")[2]
    print(f"\nIngest, gunicorn {worker_class} x {args.workers}, SQLite WAL synchronous=FULL, "
          f"body {ours['size']} bytes, {args.concurrency} connections, {args.seconds:.0f} s per phase, "
          f"medians of {args.repeat} alternating runs")
    print(f"{'target':<20} {'req/s (saturated)':>18} {'vs durable':>11} {'p50 @ half':>11} "
          f"{'p99 @ half':>11} {'errors':>7}")
    for r in results:
        print(f"{r['name']:<20} {r['rate']:>18.0f} {r['rate'] / durable['rate']:>11.2f} "
              f"{r['p50']:>9.1f}ms {r['p99']:>9.1f}ms {r['errors']:>7}")
    ratio = ours["rate"] / durable["rate"]
    print(f"kwai-bridge / durable receiver = {ratio:.2f} (target >= {RATIO_TARGET}); "
          f"kwai-bridge / bare route = {ours['rate'] / results[2]['rate']:.2f}; "
          f"p99 at half load = {ours['p99']:.1f} ms (target <= {P99_TARGET_MS:.0f} ms)")
    return 0 if ratio >= RATIO_TARGET and ours["p99"] <= P99_TARGET_MS and not ours["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
