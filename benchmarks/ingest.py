"""Webhook ingest under `kwai-bridge serve` beside a minimal durable receiver, on SQLite and
on PostgreSQL, in the same run, with wrk as the load generator.

- The minimal durable receiver (benchmarks/baselines.py): Flask, read the body, check the
  HMAC, one INSERT of the raw body (SQLite WAL with synchronous=FULL; PostgreSQL with its
  durable commit), under gunicorn with `kwai-bridge serve`'s settings, worker class too.
- Load: wrk, 1 thread, 16 connections, a new connection per request, cycling through
  distinct signed 10.7 KB Shopify orders (new order and webhook ids each): first as fast
  as the server answers (saturation), then paced at half that rate with Poisson arrivals
  (benchmarks/paced.lua) for the latency.
- Each database gets `--repeat` rounds (5: on a shared 2-core machine a round's ratio
  moves by up to a quarter, and a median of three moved with it);
  each round starts each target on a fresh database, alternating which goes first.
  Medians are shown, and each round's ratio.

- With `--conversion worker` (KWAI_BRIDGE_CONVERSION; the service's default unless
  given) the web workers store each delivery as received and the worker converts it:
  after each run, the backlog the run left is converted by one worker's converter, and
  its rate is shown beside the web workers' (it must be higher, or the backlog of a
  sustained peak would grow).

Targets: kwai-bridge >= 0.9 of the durable receiver's rate on each database; p99 at half
of kwai-bridge's peak rate <= 20 ms. Exits non-zero when one is missed or any request failed.

    python benchmarks/ingest.py [--seconds 8] [--workers 2] [--concurrency 16] [--repeat 5]
                                [--databases sqlite,postgresql] [--conversion worker|request]
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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import build_request  # noqa: E402
from benchmarks.wrk import ensure_wrk, run_wrk, write_requests  # noqa: E402
from kwai_bridge.web.serving import gunicorn_options  # noqa: E402
from kwai_bridge.settings import Settings  # noqa: E402

SECRET = "bench-shopify-secret"
SHOP = "bench.myshopify.com"
RATIO_TARGET = 0.9
P99_TARGET_MS = 20.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
BRIDGE, DURABLE = "kwai-bridge serve", "durable receiver"


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
    for _ in range(600):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return proc
        except requests.RequestException:
            if proc.poll() is not None:
                break
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


@contextmanager
def postgres_database(base_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `base_url`, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def database(kind: str, target: str, run: int, workdir: str, postgres: str) -> Iterator[str]:
    """A fresh database for one target's run: a SQLite file, or a PostgreSQL database."""
    name = f"{'bridge' if target == BRIDGE else 'durable'}-{run}"
    if kind == "sqlite":
        yield f"sqlite:///{workdir}/{name}.db"
        return
    with postgres_database(postgres, f"kwai_bench_ingest_{os.getpid()}_{name.replace('-', '_')}") as url:
        yield url


def prepared(target: str, url: str, env: dict[str, str]) -> dict[str, str]:
    """`env` for `target` on the new database at `url`, made ready for it: the bridge's
    schema migrated, or the receiver's table made."""
    if target == DURABLE:
        if url.startswith("sqlite:"):
            return {**env, "BENCH_SQLITE_PATH": url.removeprefix("sqlite:///")}
        import psycopg

        from benchmarks.baselines import POSTGRES_TABLE

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POSTGRES_TABLE)
        return {**env, "BENCH_POSTGRES_URL": url}
    env = {**env, "KWAI_BRIDGE_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "kwai_bridge.cli", "migrate"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def serve(target: str, url: str, port: int, env: dict[str, str], workers: int) -> subprocess.Popen:
    """Start `target` on the new database at `url`."""
    env = prepared(target, url, env)
    if target == DURABLE:
        return start(gunicorn_command("benchmarks.baselines:durable_app()", port, workers), env, port)
    return start([sys.executable, "-m", "kwai_bridge.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--workers", str(workers)], env, port)


#: Run in a child on the database a run left: convert its received deliveries, timed.
_DRAIN = """
import json, time
from kwai_bridge.cli.base import load_runtime, utcnow
from kwai_bridge.conversion import Converter
from kwai_bridge.runtime import build_pipeline
runtime = load_runtime()
started = time.perf_counter()
done = Converter(build_pipeline(runtime), clock=utcnow).drain()
print(json.dumps({"converted": done, "seconds": time.perf_counter() - started}))
"""


def drain(url: str, env: dict[str, str]) -> dict:
    """Convert the received deliveries a run left, in one process as one worker would."""
    done = subprocess.run([sys.executable, "-c", _DRAIN], env={**env, "KWAI_BRIDGE_DATABASE_URL": url}, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(wrk: str, proc_start, files: dict[str, Path], args) -> dict:
    port = free_port()
    proc = proc_start(port)
    try:
        run_wrk(wrk, port, files["warm-up"], seconds=1, concurrency=args.concurrency)
        peak = run_wrk(wrk, port, files["saturation"], seconds=args.seconds, concurrency=args.concurrency)
        half = run_wrk(wrk, port, files["half"], seconds=args.seconds, concurrency=args.concurrency,
                       rate=peak["rate"] / 2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return {"rate": peak["rate"], "requests": peak["requests"], "errors": peak["errors"] + half["errors"],
            "half_rate": half["rate"], "p50": half["p50"], "p99": half["p99"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--repeat", type=int, default=5, help="rounds on each database; medians are shown")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG),
                        help="a PostgreSQL server to make the benchmark's databases on")
    parser.add_argument("--conversion", choices=("worker", "request"), default=Settings().conversion,
                        help="KWAI_BRIDGE_CONVERSION for kwai-bridge (default: the service's default)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    wrk = ensure_wrk()
    if "postgresql" in kinds:
        import psycopg

        try:
            psycopg.connect(args.postgres, connect_timeout=3).close()
        except psycopg.Error as exc:
            print(f"PostgreSQL is needed at {args.postgres} (or run with --databases sqlite): {exc}")
            return 1
    keys = os.environ.get("KWAI_BRIDGE_SECRET_KEYS") or base64.urlsafe_b64encode(os.urandom(32)).decode()
    runs: dict[tuple[str, str], list[dict]] = {(k, t): [] for k in kinds for t in (BRIDGE, DURABLE)}
    with tempfile.TemporaryDirectory() as workdir:
        stores = Path(workdir) / "stores.toml"
        stores.write_text(f'[[stores]]\nid = "bench"\nplatform = "shopify"\nshop = "{SHOP}"\n'
                          f'webhook_secrets = ["{SECRET}"]\npixel_id = "px"\naccess_token = "tok"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KWAI_BRIDGE_", "PROMETHEUS_"))}
        env.update({"PYTHONPATH": str(ROOT), "KWAI_BRIDGE_STORES": str(stores), "KWAI_BRIDGE_LOG_LEVEL": "WARNING",
                    "KWAI_BRIDGE_SECRET_KEYS": keys, "BENCH_SECRET": SECRET,
                    "KWAI_BRIDGE_CONVERSION": args.conversion})
        # Distinct orders, more than a run sends: every target's run has its own database,
        # so the files serve every run without a repeat.
        files = {name: Path(workdir) / f"{name}.http" for name in ("warm-up", "saturation", "half")}
        for (name, path), (offset, count) in zip(files.items(), ((0, 2_000), (10_000_000, args.seconds * 2_500),
                                                                  (20_000_000, args.seconds * 1_250))):
            write_requests(path, request_factory(0, offset)[0], count)
        size = len(order_template())
        for r in range(args.repeat):
            for kind in kinds:
                # Alternate which target goes first: the machine's load drifts.
                for target in (BRIDGE, DURABLE) if r % 2 == 0 else (DURABLE, BRIDGE):
                    with database(kind, target, r, workdir, args.postgres) as url:
                        run = measure(wrk, lambda port: serve(target, url, port, env, args.workers), files, args)
                        if target == BRIDGE and args.conversion == "worker":
                            run["drain"] = drain(url, env)
                        runs[kind, target].append(run)
    return report(runs, kinds, args, size)


def report(runs: dict[tuple[str, str], list[dict]], kinds: list[str], args, size: int) -> int:
    def median(kind: str, target: str, key: str) -> float:
        return statistics.median(row[key] for row in runs[kind, target])

    worker_class = gunicorn_options()["worker_class"].rpartition(".")[2]
    print(f"\nIngest: gunicorn {worker_class} x {args.workers}, signed {size:,}-byte Shopify orders; wrk 1 thread, "
          f"{args.concurrency} connections, a new connection per request, {args.seconds} s at saturation, then "
          f"{args.seconds} s paced at half the peak; medians of {args.repeat} alternating rounds")
    print(f"{'database':<11} {'target':<18} {'req/s':>7} {'vs durable':>11} {'half req/s':>11} {'p50 @ half':>11} "
          f"{'p99 @ half':>11} {'errors':>7}  rounds (req/s)")
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    ok = True
    for kind in kinds:
        durable = median(kind, DURABLE, "rate")
        for target in (BRIDGE, DURABLE):
            rows = runs[kind, target]
            print(f"{names[kind]:<11} {target:<18} {median(kind, target, 'rate'):>7.0f} "
                  f"{median(kind, target, 'rate') / durable:>11.2f} {median(kind, target, 'half_rate'):>11.0f} "
                  f"{median(kind, target, 'p50'):>9.1f}ms {median(kind, target, 'p99'):>9.1f}ms "
                  f"{sum(r['errors'] for r in rows):>7}  {', '.join(str(round(r['rate'])) for r in rows)}")
        ratio = median(kind, BRIDGE, "rate") / durable
        rounds = [b["rate"] / d["rate"] for b, d in zip(runs[kind, BRIDGE], runs[kind, DURABLE])]
        p99 = median(kind, BRIDGE, "p99")
        print(f"{names[kind]}: kwai-bridge / durable receiver = {ratio:.2f} (target >= {RATIO_TARGET}; rounds "
              f"{', '.join(f'{x:.2f}' for x in rounds)}); kwai-bridge p99 at half load = {p99:.1f} ms "
              f"(target <= {P99_TARGET_MS:.0f} ms)")
        drains = [r["drain"] for r in runs[kind, BRIDGE] if "drain" in r]
        if drains:
            print(f"{names[kind]}: the worker's converter, after each run, one process: "
                  + ", ".join(f"{d['converted']:,} deliveries in {d['seconds']:.1f} s = "
                              f"{d['converted'] / max(d['seconds'], 1e-9):,.0f}/s" for d in drains)
                  + f" (kwai-bridge answered {median(kind, BRIDGE, 'rate'):.0f}/s)")
        ok &= ratio >= RATIO_TARGET and p99 <= P99_TARGET_MS
        ok &= not any(r["errors"] for target in (BRIDGE, DURABLE) for r in runs[kind, target])
    wrapped = max(r["requests"] for rows in runs.values() for r in rows) > args.seconds * 2_500
    if wrapped:
        print("warning: a run went through every pre-signed request; later ones were duplicates")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
