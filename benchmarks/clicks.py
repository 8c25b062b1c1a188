"""The cost of a click request's database work with its limits, beside the same click
store write without them, in the same run, on a store already at its cap.

- baseline: `ClickStore.record` without a quota: the identifier's upsert in one write
  transaction (what a click request cost before the limits).
- limited: the same with the quota the route applies: the address and store counters
  in one upsert first, then the upsert, and every `evict_every` requests the look that
  evicts the oldest entries beyond `max_clicks`.

Each click is a new address and a new cart token, so every one adds an entry and the
store stays at its cap, evicting. Prints ms per click (median and p99 over the run) and
the ratio of the means. Target: at most 2, i.e. the limits cost no more than one more
statement like the write itself (on PostgreSQL that is one more round trip).

    python benchmarks/clicks.py [--clicks 4000] [--max-clicks 100000] [--database-url URL]

A PostgreSQL URL gets a schema of its own for the run, dropped afterwards.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from kwai_bridge.attribution import ClickQuota, ClickStore  # noqa: E402
from kwai_bridge.clicks import ADDRESS_SCOPE  # noqa: E402
from kwai_bridge.db import clicks, make_engine, migrate  # noqa: E402
from kwai_bridge.ratelimit import Limit  # noqa: E402

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
RATIO_TARGET = 2.0


def fill(engine, store_id: str, count: int) -> None:
    """`count` entries for the store, clicked before T0."""
    rows = [{"store_id": store_id, "kind": "cart_token", "value": f"old-{i}", "click_id": f"O{i}",
             "clicked_at": T0 - timedelta(seconds=count - i), "order_key": None, "updated_at": T0}
            for i in range(count)]
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(clicks), rows[start:start + 5000])


def run(store: ClickStore, store_id: str, n: int, *, max_clicks: int | None, start: int = 0) -> list[float]:
    """Milliseconds per click for `n` clicks, each from a new address with a new cart token."""
    took = []
    for i in range(start, start + n):
        now = T0 + timedelta(milliseconds=20 * i)  # 3,000 a minute: under the limits below
        quota = None if max_clicks is None else ClickQuota(
            per_window=1_000_000, max_clicks=max_clicks, more=(Limit(ADDRESS_SCOPE, f"10.{i // 250}.{i % 250}.1", 120),))
        started = time.perf_counter()
        store.record(store_id, click_id=f"C{i}", identifiers={"cart_token": f"{store_id}-{i}"}, clicked_at=now,
                     now=now, quota=quota)
        took.append((time.perf_counter() - started) * 1000)
    return took


@contextlib.contextmanager
def database(url: str | None, tmp: str):
    """The run's database: a SQLite file in `tmp`, or a fresh schema in PostgreSQL."""
    if not url:
        yield f"sqlite:///{Path(tmp) / 'clicks.db'}"
        return
    import psycopg

    base = url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"bench_clicks_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'drop schema "{schema}" cascade')


def describe(took: list[float]) -> tuple[float, float]:
    ordered = sorted(took)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=4000)
    parser.add_argument("--max-clicks", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.database_url, tmp) as url:
        engine = make_engine(url)
        migrate(engine)
        store = ClickStore(engine)
        for store_id in ("baseline", "limited"):
            fill(engine, store_id, args.max_clicks)
        run(store, "warm-up", 50, max_clicks=None, start=10**6)
        # interleaved halves, so that neither side gets the quieter half of the machine
        base, limited = [], []
        n = args.clicks // 2
        for half in range(2):
            base += run(store, "baseline", n, max_clicks=None, start=half * n)
            limited += run(store, "limited", n, max_clicks=args.max_clicks, start=half * n)
        held = store.count("limited")
        engine.dispose()
    (b50, b99), (l50, l99) = describe(base), describe(limited)
    ratio = statistics.mean(limited) / statistics.mean(base)
    print(f"click store write, {args.clicks} clicks on a store of {args.max_clicks:,} entries ({url.split(':')[0]})")
    print(f"  baseline (no limits)   median {b50:6.2f} ms   p99 {b99:6.2f} ms   mean {statistics.mean(base):6.2f} ms")
    print(f"  limited (counters+cap) median {l50:6.2f} ms   p99 {l99:6.2f} ms   mean {statistics.mean(limited):6.2f} ms")
    print(f"  added {statistics.mean(limited) - statistics.mean(base):.2f} ms a click; ratio of means {ratio:.2f} "
          f"(target <= {RATIO_TARGET}); entries held {held:,} (cap {args.max_clicks:,})")
    return 0 if ratio <= RATIO_TARGET and held <= args.max_clicks else 1


if __name__ == "__main__":
    sys.exit(main())
