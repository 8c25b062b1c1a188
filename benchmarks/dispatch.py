"""Dispatch throughput: the dispatcher draining a real outbox into the loopback fake Kwai,
beside a bare `requests.Session` client sending the same bodies with the same
concurrency to the same fake, in the same run.

    python benchmarks/dispatch.py [--events 2000] [--concurrency 16] [--database-url URL]

Prints events/s for both and their ratio, with Kwai answering at once and after 50 ms.
Target: the dispatcher reaches at least 0.8 of the bare client in both.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from random import Random

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.values import Conversion  # noqa: E402
from kwai_bridge.config import StoreConfig, Stores  # noqa: E402
from kwai_bridge.db import make_engine, migrate  # noqa: E402
from kwai_bridge.outbox import Outbox  # noqa: E402
from kwai_bridge.worker import Dispatcher  # noqa: E402
from kwai_bridge.kwai import wire  # noqa: E402
from kwai_bridge.kwai.client import KwaiClient  # noqa: E402
from kwai_bridge.kwai.events import Content, KwaiEvent  # noqa: E402

TARGET = 0.8
STORE = StoreConfig(id="bench", platform="shopify", shop="bench.myshopify.com",
                    webhook_secrets=("s",), pixel_id="px-bench", access_token="tok-bench")


class FixedRegistry:
    """The dispatcher only reads `.stores`."""

    stores = Stores([STORE])


def events(count: int) -> list[KwaiEvent]:
    now = datetime.now(timezone.utc)
    return [KwaiEvent(event_name="EVENT_PURCHASE", event_time=now, third_party="shopify",
                      idempotency_key=f"order:{i}:EVENT_PURCHASE", click_id=f"click-{i}",
                      value=Decimal("99.90"), currency="BRL",
                      contents=(Content(id="p1", quantity=1, price=Decimal("99.90")),),
                      content_type="product", content_id="p1", quantity=1)
            for i in range(count)]


def start_fake(latency_ms: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_kwai", "--port", str(port),
                             "--latency-ms", str(latency_ms)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/log/common"
    for _ in range(200):
        try:
            requests.post(base + "/api", json={}, timeout=1)
            return proc, base
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError("fake Kwai did not start")


def bare_client(base: str, batch: list[KwaiEvent], concurrency: int) -> float:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency, max_retries=0)
    session.mount("http://", adapter)
    session.trust_env = False
    bodies = [wire.post_body(e, pixel_id=STORE.pixel_id, access_token=STORE.access_token, track_flag=False)
              for e in batch]

    def send(body: dict) -> None:
        answer = session.post(base + "/api", json=body, timeout=(3.05, 10))
        assert answer.json()["result"] == 1, answer.text

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(send, bodies))
    elapsed = time.perf_counter() - start
    session.close()
    return len(batch) / elapsed


def dispatcher(base: str, batch: list[KwaiEvent], concurrency: int, database_url: str) -> float:
    engine = make_engine(database_url)
    migrate(engine)
    outbox = Outbox(engine)
    now = datetime.now(timezone.utc)
    for start in range(0, len(batch), 500):
        outbox.accept(store_id=STORE.id, platform="shopify", topic="orders/paid", delivery_key=f"d{start}",
                      received_at=now, body=b"{}", headers={},
                      conversions=[Conversion(event=e, click_source="attribute") for e in batch[start:start + 500]])
    client = KwaiClient(base, pool_size=concurrency)
    runner = Dispatcher(outbox=outbox, registry=FixedRegistry(), client=client, concurrency=concurrency,
                        lease_seconds=90, rng=Random(1))
    start = time.perf_counter()
    tally = runner.run(once=True)
    elapsed = time.perf_counter() - start
    client.close()
    assert tally == {"sent": len(batch)}, tally
    engine.dispose()
    return len(batch) / elapsed


def fresh_database(kind: str, workdir: str, n: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir}/bench-{n}.db"
    import psycopg

    base = os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"bench_{os.getpid()}_{n}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'drop schema if exists "{schema}" cascade')
        conn.execute(f'create schema "{schema}"')
    return f"{base}?options=-csearch_path%3D{schema}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each client; medians are shown")
    args = parser.parse_args()
    rows = []
    failed = False
    with tempfile.TemporaryDirectory() as workdir:
        for latency_ms in (0, 50):
            proc, base = start_fake(latency_ms)
            try:
                count = args.events if latency_ms == 0 else min(args.events, 1000)
                bare_client(base, events(200), args.concurrency)  # warm-up
                for n, backend in enumerate(args.backends.split(",")):
                    # Alternate the two clients and keep the medians: on a small shared
                    # machine one run of either can be off by a fifth.
                    baselines, ours = [], []
                    try:
                        for r in range(args.repeat):
                            baselines.append(bare_client(base, events(count), args.concurrency))
                            url = fresh_database(backend, workdir, latency_ms * 100 + n * 10 + r)
                            ours.append(dispatcher(base, events(count), args.concurrency, url))
                    except Exception as exc:
                        print(f"skipping {backend}: {exc.__class__.__name__}: {exc}")
                        continue
                    baseline, mine = statistics.median(baselines), statistics.median(ours)
                    ratio = mine / baseline
                    failed |= ratio < TARGET
                    rows.append((latency_ms, backend, count, baseline, mine, ratio))
            finally:
                proc.terminate()
                proc.wait()
    print(f"\nDispatch throughput, concurrency {args.concurrency}, fake Kwai on loopback "
          f"(medians of {args.repeat} alternating runs)")
    print(f"{'Kwai latency':>12} {'outbox':>8} {'events':>7} {'bare client ev/s':>17} "
          f"{'dispatcher ev/s':>16} {'ratio':>6}  target >= {TARGET}")
    for latency_ms, backend, count, baseline, ours, ratio in rows:
        print(f"{latency_ms:>10} ms {backend:>8} {count:>7} {baseline:>17.0f} {ours:>16.0f} {ratio:>6.2f}"
              f"  {'ok' if ratio >= TARGET else 'BELOW TARGET'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
