"""Dispatch at the pace the dispatcher finds, beside baselines from the same run.

1. Throughput: the dispatcher (KWAI_BRIDGE_DISPATCH_CONCURRENCY's default cap, 64)
   draining a real outbox into the loopback fake Kwai answering after 20 ms and after
   200 ms, beside a bare `requests.Session` client sending prebuilt bodies to the same
   fake from 8, 16, 32 and 64 threads for `--seconds`. Target: at least 0.9 of the best
   of the bare clients, on SQLite and on PostgreSQL (medians of `--repeat` alternating runs).
   The dispatcher's client hands each request to the connection pool requests keeps for
   Kwai's host, without `Session.send`'s work per request (kwai_bridge.kwai.client): part
   of why it can pass the bare client, which goes through `Session.post`.
2. A rate limit: the fake answers 429 beyond 200 requests/s (a token bucket holding a
   tenth of a second's worth), after 20 ms otherwise; once without Retry-After, once with
   `Retry-After: 1`. The dispatcher drains `--limited-events` events. Targets: fewer
   than 1 % of all requests refused (most of those while it looks for the limit at the
   start), and once settled (the middle half of the requests) a request rate under the
   limit, yet above 0.75 of it (a dispatcher crawling along would be under it too).

    python benchmarks/dispatch.py [--seconds 4] [--repeat 3] [--backends sqlite,postgres]
                                  [--parts throughput,limit]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from random import Random

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.values import Conversion  # noqa: E402
from kwai_bridge.catalog import Catalog, StoreRegistry  # noqa: E402
from kwai_bridge.config import StoreConfig  # noqa: E402
from kwai_bridge.db import make_engine, migrate  # noqa: E402
from kwai_bridge.outbox import Outbox  # noqa: E402
from kwai_bridge.sealing import Sealer, new_key  # noqa: E402
from kwai_bridge.settings import Settings  # noqa: E402
from kwai_bridge.worker import Dispatcher  # noqa: E402
from kwai_bridge.kwai import wire  # noqa: E402
from kwai_bridge.kwai.client import KwaiClient  # noqa: E402
from kwai_bridge.kwai.events import Content, KwaiEvent  # noqa: E402
from tests.fake_kwai import FakeKwai  # noqa: E402

THROUGHPUT_TARGET = 0.9
REFUSED_TARGET = 0.01
LIMIT_USE_TARGET = 0.75
BARE_THREADS = (8, 16, 32, 64)
CAP = Settings().dispatch_concurrency
STORE = StoreConfig(id="bench", platform="shopify", shop="bench.myshopify.com",
                    webhook_secrets=("s",), pixel_id="px-bench", access_token="tok-bench")


def registry_of(engine) -> StoreRegistry:
    """The bench store in the database of `engine`, read as a worker reads its stores."""
    catalog = Catalog(engine, sealer=Sealer((new_key().encode(),), "bench"))
    if catalog.get(STORE.id) is None:
        catalog.create(STORE, actor="bench", now=datetime.now(timezone.utc))
    return StoreRegistry(catalog, refresh_seconds=60)


def events(count: int, offset: int = 0) -> list[KwaiEvent]:
    now = datetime.now(timezone.utc)
    return [KwaiEvent(event_name="EVENT_PURCHASE", event_time=now, third_party="shopify",
                      idempotency_key=f"order:{i}:EVENT_PURCHASE", click_id=f"click-{i}",
                      value=Decimal("99.90"), currency="BRL",
                      contents=(Content(id="p1", quantity=1, price=Decimal("99.90")),),
                      content_type="product", content_id="p1", quantity=1)
            for i in range(offset, offset + count)]


def start_fake(latency_ms: float) -> tuple[subprocess.Popen, str]:
    """The fake Kwai in its own process (so that it takes no GIL from the clients)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_kwai", "--port", str(port),
                             "--latency-ms", str(latency_ms)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/log/common"
    for _ in range(200):
        try:
            requests.post(base + "/api", json={}, timeout=latency_ms / 1000 + 1)
            return proc, base
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError("fake Kwai did not start")


def bare_client(base: str, threads: int, seconds: float) -> float:
    """Events/s of `threads` threads posting prebuilt bodies over one session for `seconds`."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=threads, pool_maxsize=threads, max_retries=0)
    session.mount("http://", adapter)
    session.trust_env = False
    bodies = [wire.post_body(e, pixel_id=STORE.pixel_id, access_token=STORE.access_token, track_flag=False)
              for e in events(500)]
    sent = [0] * threads
    deadline = time.perf_counter() + seconds

    def send(n: int) -> None:
        while time.perf_counter() < deadline:
            answer = session.post(base + "/api", json=bodies[(n + sent[n] * threads) % len(bodies)],
                                  timeout=(3.05, 10))
            assert answer.json()["result"] == 1, answer.text
            sent[n] += 1

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    session.close()
    return sum(sent) / elapsed


def filled_outbox(database_url: str, count: int) -> Outbox:
    engine = make_engine(database_url)
    migrate(engine)
    outbox = Outbox(engine)
    now = datetime.now(timezone.utc)
    for start in range(0, count, 500):
        outbox.accept(store_id=STORE.id, platform="shopify", topic="orders/paid", delivery_key=f"d{start}",
                      received_at=now, body=b"{}", headers={},
                      conversions=[Conversion(event=e, click_source="attribute")
                                   for e in events(min(500, count - start), start)])
    return outbox


def dispatcher(base: str, count: int, database_url: str) -> float:
    """Events/s of the dispatcher draining `count` events with its default cap."""
    outbox = filled_outbox(database_url, count)
    with KwaiClient(base, pool_size=CAP) as client:
        runner = Dispatcher(outbox=outbox, registry=registry_of(outbox.engine), client=client, concurrency=CAP,
                            lease_seconds=90, rng=Random(1))
        start = time.perf_counter()
        tally = runner.run(once=True)
        elapsed = time.perf_counter() - start
    assert tally == {"sent": count}, tally
    outbox.engine.dispose()
    return count / elapsed


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


def throughput(args, workdir: str) -> tuple[list[str], bool]:
    lines, failed, n = [], False, 0
    lines.append(f"{'Kwai latency':>12} {'outbox':>8} {'events':>7} "
                 + " ".join(f"{f'bare x{t}':>9}" for t in BARE_THREADS)
                 + f" {'dispatcher':>11} {'vs best':>8}  target >= {THROUGHPUT_TARGET}")
    for latency_ms, count in ((20, 6000), (200, 2000)):
        proc, base = start_fake(latency_ms)
        try:
            bare_client(base, 16, 1.0)  # warm-up
            for backend in args.backends.split(","):
                # Alternate the clients and keep medians: on a small shared machine one
                # run of either can be off by a fifth.
                bare: dict[int, list[float]] = {t: [] for t in BARE_THREADS}
                ours: list[float] = []
                try:
                    for _ in range(args.repeat):
                        for threads in BARE_THREADS:
                            bare[threads].append(bare_client(base, threads, args.seconds))
                        n += 1
                        ours.append(dispatcher(base, count, fresh_database(backend, workdir, n)))
                except Exception as exc:
                    lines.append(f"skipping {backend}: {exc.__class__.__name__}: {exc}")
                    continue
                medians = {t: statistics.median(rates) for t, rates in bare.items()}
                mine = statistics.median(ours)
                ratio = mine / max(medians.values())
                failed |= ratio < THROUGHPUT_TARGET
                verdict = "ok" if ratio >= THROUGHPUT_TARGET else "BELOW TARGET"
                lines.append(f"{latency_ms:>10} ms {backend:>8} {count:>7} "
                             + " ".join(f"{medians[t]:>9.0f}" for t in BARE_THREADS)
                             + f" {mine:>11.0f} {ratio:>8.2f}  {verdict}")
        finally:
            proc.terminate()
            proc.wait()
    return lines, failed


def rate_limited(args, workdir: str, *, retry_after: float | None, limit: float = 200.0) -> tuple[str, bool]:
    """The dispatcher against a fake refusing beyond `limit` requests/s; one line and
    whether a target was missed."""
    count = args.limited_events
    outbox = filled_outbox(f"sqlite:///{workdir}/limited-{retry_after}.db", count)
    with FakeKwai(latency=0.02) as kwai, KwaiClient(kwai.base_url, pool_size=CAP) as client:
        kwai.rate_limit(limit, retry_after=retry_after)
        runner = Dispatcher(outbox=outbox, registry=registry_of(outbox.engine), client=client, concurrency=CAP,
                            lease_seconds=90, rng=Random(1))
        stop = threading.Event()
        loop = threading.Thread(target=runner.run, kwargs={"stop": stop, "poll_interval": 0.2})
        loop.start()
        # Refused events come back after their retry (10 s), so every event is delivered.
        delivered = kwai.wait_for(count, timeout=count / limit * 3 + 60)
        stop.set()
        loop.join()
        received = kwai.received
    outbox.engine.dispose()
    refused = sum(1 for r in received if r.status == 429)
    share = refused / len(received)
    # Settled: the middle half of the requests, past the search for the limit at the
    # start and before the refused events' retries trickle in at the end.
    middle = received[len(received) // 4: 3 * len(received) // 4]
    rate = len(middle) / (middle[-1].time - middle[0].time)
    settled_refused = sum(1 for r in middle if r.status == 429)
    missed = not delivered or share >= REFUSED_TARGET or not LIMIT_USE_TARGET * limit <= rate < limit
    header = "none" if retry_after is None else f"{retry_after:g} s"
    line = (f"{header:>11} {len(received):>9} {refused:>8} {share:>8.2%} {settled_refused:>8} {rate:>12.0f} "
            f"{rate / limit:>9.2f} {received[-1].time - received[0].time:>8.1f} s  "
            f"{'ok' if not missed else 'MISSED TARGET'}")
    return line, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each bare client's run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each client; medians are shown")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--parts", default="throughput,limit")
    parser.add_argument("--limited-events", type=int, default=8000)
    args = parser.parse_args()
    parts = args.parts.split(",")
    failed = False
    with tempfile.TemporaryDirectory() as workdir:
        if "throughput" in parts:
            lines, missed = throughput(args, workdir)
            failed |= missed
            print(f"\nDispatch throughput (events/s), fake Kwai on loopback, the dispatcher's cap {CAP}, "
                  f"medians of {args.repeat} alternating runs")
            print("\n".join(lines))
        if "limit" in parts:
            rows = []
            for retry_after in (None, 1.0):
                line, missed = rate_limited(args, workdir, retry_after=retry_after)
                rows.append(line)
                failed |= missed
            print(f"\nKwai refusing beyond 200 requests/s (429), 20 ms otherwise, {args.limited_events} events; "
                  f"settled: the middle half of the requests")
            print(f"{'Retry-After':>11} {'requests':>9} {'refused':>8} {'share':>8} {'settled':>8} "
                  f"{'requests/s':>12} {'of limit':>9} {'run':>10}  targets: share < {REFUSED_TARGET:.0%}, "
                  f"{LIMIT_USE_TARGET} <= settled of limit < 1")
            print("\n".join(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
