"""`Records.events` (the admin API's `GET /api/v1/events`) with 1,000,000 events in the
outbox, on SQLite and on PostgreSQL, in the same run:

- the first page and the 100th (limit 50; the cursor of page 99 found beforehand), median
  of `--runs` reads each, for every store (an admin), a status, a merchant's store, a
  merchant's three stores, and a merchant's store and a status. Target: median < 50 ms.
- what schema v5's indexes cost an insert: 200,000 events inserted in one statement into
  an empty outbox with v4's indexes, then with each v5 index, microseconds per event.

The outbox is filled in one INSERT ... SELECT (a recursive counter on SQLite,
generate_series on PostgreSQL): 20 stores (19 of about 5 % each and one of 0.1 %),
statuses mixed as a live outbox holds them (80 % sent, 6 % pending, 6 % unattributed,
4 % dead, 2 % held, 2 % skipped).

    python benchmarks/records_pages.py [--events 1000000] [--runs 15] [--postgres URL]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from kwai_bridge.db import make_engine, migrate  # noqa: E402
from kwai_bridge.kwai.events import KwaiEvent  # noqa: E402
from kwai_bridge.records import Records  # noqa: E402

TARGET_MS = 50.0
LIMIT = 50
PAGE = 100
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"

RECORD = json.dumps(KwaiEvent(
    event_name="EVENT_PURCHASE", event_time=datetime(2026, 11, 1, tzinfo=timezone.utc), third_party="shopify",
    idempotency_key="order:1:EVENT_PURCHASE", click_id="bench-click", value=Decimal("10.28"), currency="BRL",
).to_record(), separators=(",", ":"))

# One expression per column, over the counter `i`, the same text on both databases.
STORE = "CASE WHEN i % 1000 = 0 THEN 'small' ELSE 'store-' || (i % 19) END"
STATUS = ("CASE WHEN (i * 37) % 100 < 80 THEN 'sent' WHEN (i * 37) % 100 < 86 THEN 'pending' "
          "WHEN (i * 37) % 100 < 92 THEN 'unattributed' WHEN (i * 37) % 100 < 96 THEN 'dead' "
          "WHEN (i * 37) % 100 < 98 THEN 'held' ELSE 'skipped' END")
NAME = "CASE i % 3 WHEN 0 THEN 'EVENT_PURCHASE' WHEN 1 THEN 'EVENT_PLACE_ORDER' ELSE 'EVENT_ADD_TO_CART' END"
COLUMNS = "store_id, platform, business_key, event_name, status, event, attempts, created_at, updated_at"
SQLITE_FILL = f"""
    WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop)
    INSERT INTO events ({COLUMNS})
    SELECT {STORE}, 'shopify', 'order-' || i, {NAME}, {STATUS}, :record, 1,
           strftime('%Y-%m-%d %H:%M:%f', '2026-11-01', '+' || (i / 10) || ' seconds'),
           strftime('%Y-%m-%d %H:%M:%f', '2026-11-01', '+' || (i / 10) || ' seconds')
    FROM n"""
PG_FILL = f"""
    INSERT INTO events ({COLUMNS})
    SELECT {STORE}, 'shopify', 'order-' || i, {NAME}, {STATUS}, :record, 1,
           timestamptz '2026-11-01 00:00:00+00' + i * interval '100 milliseconds',
           timestamptz '2026-11-01 00:00:00+00' + i * interval '100 milliseconds'
    FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS i"""

SCENARIOS = (
    ("every store", {"stores": None}),
    ("status dead", {"stores": None, "status": "dead"}),
    ("one store (5 %)", {"stores": ["store-1"]}),
    ("three stores", {"stores": ["store-1", "store-2", "small"]}),
    ("one store, sent", {"stores": ["store-1"], "status": "sent"}),
    ("small store (0.1 %)", {"stores": ["small"]}),
)
V5 = {"ix_events_store_status_id": "(store_id, status, id) instead of (store_id, status)",
      "ix_events_status_id": "(status, id)"}


def fill(engine, count: int, *, batch: int = 250_000) -> float:
    """Insert `count` events; return the seconds it took."""
    sql = text(SQLITE_FILL if engine.dialect.name == "sqlite" else PG_FILL)
    began = time.perf_counter()
    for start in range(1, count + 1, batch):
        with engine.begin() as conn:
            conn.execute(sql, {"start": start, "stop": min(count, start + batch - 1), "record": RECORD})
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE events"))  # what autovacuum does after a load
    return time.perf_counter() - began


def timed(call, runs: int) -> float:
    """Median milliseconds of `runs` calls (after one unmeasured)."""
    call()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def pages(records: Records, runs: int) -> list[tuple[str, float, float | None]]:
    rows = []
    for name, filters in SCENARIOS:
        first = timed(lambda: records.events(limit=LIMIT, **filters), runs)
        cursor = None
        for _ in range(PAGE - 1):
            cursor = records.events(limit=LIMIT, cursor=cursor, **filters).next_cursor
            if cursor is None:
                break
        hundredth = None
        if cursor is not None:
            hundredth = timed(lambda: records.events(limit=LIMIT, cursor=cursor, **filters), runs)
        rows.append((name, first, hundredth))
    return rows


def insert_costs(make, count: int) -> dict[str, float]:
    """Microseconds per inserted event with v4's indexes, then with each v5 index."""
    costs = {}
    for label, keep in (("v4 indexes", ()), *((V5[n], (n,)) for n in V5), ("v5 indexes", tuple(V5))):
        engine = make()
        with engine.begin() as conn:
            for name in V5:
                if name not in keep:
                    conn.execute(text(f"DROP INDEX {name}"))
            if "ix_events_store_status_id" not in keep:
                conn.execute(text("CREATE INDEX ix_events_store_status ON events (store_id, status)"))
        costs[label] = fill(engine, count) / count * 1e6
        engine.dispose()
    return costs


def run(label: str, make, args) -> bool:
    engine = make()
    seconds = fill(engine, args.events)
    print(f"\n{label}: {args.events:,} events filled in {seconds:.1f} s; Records.events, limit {LIMIT}, "
          f"median of {args.runs} reads")
    print(f"{'scenario':<22} {'first page':>11} {'page 100':>11}")
    ok = True
    for name, first, hundredth in pages(Records(engine), args.runs):
        shown = "(no page)" if hundredth is None else f"{hundredth:.2f} ms"
        print(f"{name:<22} {first:>8.2f} ms {shown:>11}")
        ok = ok and first < TARGET_MS and (hundredth is None or hundredth < TARGET_MS)
    engine.dispose()
    costs = insert_costs(make, args.insert_events)
    base = costs["v4 indexes"]
    print(f"insert cost, {args.insert_events:,} events in one statement: " + "; ".join(
        f"{name} {us:.1f} µs/event ({us - base:+.1f})" for name, us in costs.items()))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--insert-events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postgres", default=os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as workdir:
        made = iter(range(10**6))

        def sqlite():
            engine = make_engine(f"sqlite:///{workdir}/records-{next(made)}.db")
            migrate(engine)
            return engine

        ok = run("SQLite", sqlite, args) and ok
    schemas = []
    import psycopg

    def postgres():
        schema = "bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        sep = "&" if "?" in args.postgres else "?"
        engine = make_engine(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
        migrate(engine)
        return engine

    try:
        ok = run("PostgreSQL", postgres, args) and ok
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"\nevery median under {TARGET_MS:.0f} ms: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
