"""The console's overview and a store's page with 1,000 stores and 1,000,000 events, on
SQLite and on PostgreSQL, in the same run: median milliseconds to render each page
(through the app, in process, signed in as an admin), beside the admin API's store health
(`GET /api/v1/stores/<id>/health`) as the baseline. Target: median < 200 ms.

Events are spread evenly over the last 30 days and the 1,000 stores, with statuses mixed
as in benchmarks/records_pages.py; 100,000 webhook deliveries likewise.

    python benchmarks/console.py [--events 1000000] [--stores 1000] [--runs 15] [--postgres URL]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cryptography.fernet import Fernet  # noqa: E402

os.environ.setdefault("KWAI_BRIDGE_SECRET_KEYS", Fernet.generate_key().decode())

from sqlalchemy import text  # noqa: E402

from benchmarks.records_pages import NAME, RECORD, STATUS, timed  # noqa: E402
from kwai_bridge.accounts import Accounts  # noqa: E402
from kwai_bridge.config import check_store  # noqa: E402
from kwai_bridge.db import make_engine, migrate  # noqa: E402
from server import create_app  # noqa: E402

TARGET_MS = 200.0
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
START = NOW - timedelta(days=30)
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-console-password"
CLICK = "CASE WHEN i % 4 = 0 THEN NULL ELSE 'attribute' END"


def fill(engine, *, events: int, stores: int, deliveries: int) -> float:
    sqlite = engine.dialect.name == "sqlite"
    step = 30 * 86400 / events
    store = f"'store-' || (i % {stores})"
    if sqlite:
        series = "WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop) "
        at = f"strftime('%Y-%m-%d %H:%M:%f', '{START:%Y-%m-%d %H:%M:%S}', '+' || (i * {step}) || ' seconds')"
        source = "FROM n"
    else:
        series = ""
        at = f"timestamptz '{START.isoformat()}' + i * interval '{step} seconds'"
        source = "FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS i"
    fill_events = text(f"""{series}INSERT INTO events (store_id, platform, business_key, event_name, status, event,
        attempts, click_source, created_at, updated_at)
        SELECT {store}, 'shopify', 'order-' || i, {NAME}, {STATUS}, :record, 1, {CLICK}, {at}, {at} {source}""")
    d_step = 30 * 86400 / deliveries
    d_at = at.replace(str(step), str(d_step))
    fill_deliveries = text(f"""{series}INSERT INTO deliveries (store_id, platform, topic, delivery_key, received_at,
        outcome) SELECT {store}, 'shopify', CASE i % 2 WHEN 0 THEN 'orders/paid' ELSE 'orders/create' END,
        'd-' || i, {d_at}, 'queued' {source}""")
    began = time.perf_counter()
    for sql, count in ((fill_events, events), (fill_deliveries, deliveries)):
        for start in range(1, count + 1, 250_000):
            with engine.begin() as conn:
                conn.execute(sql, {"start": start, "stop": min(count, start + 249_999), "record": RECORD})
    if not sqlite:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE events"))
            conn.execute(text("VACUUM ANALYZE deliveries"))
    return time.perf_counter() - began


def run(label: str, url: str, args) -> bool:
    engine = make_engine(url)
    migrate(engine)
    seconds = fill(engine, events=args.events, stores=args.stores, deliveries=args.events // 10)
    app = create_app({"DATABASE_URL": url}, clock=lambda: NOW)
    runtime = app.extensions["kwai_bridge.runtime"]
    parsed = [(check_store({"id": f"store-{n}", "platform": "shopify", "shop": f"store-{n}.myshopify.com",
                            "webhook_secrets": ["bench-secret"], "pixel_id": f"pixel-{n}",
                            "access_token": f"bench-token-{n}"}), {}) for n in range(args.stores)]
    runtime.catalog.import_stores(parsed, actor="bench", now=NOW)
    runtime.registry.refresh()
    accounts = Accounts(runtime.engine)
    accounts.add_user("bench@agency.example", role="admin", password=PASSWORD, actor="bench", now=NOW)
    token, _ = accounts.create_token("bench@agency.example", actor="bench", now=NOW)
    client = app.test_client()
    form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").get_data(as_text=True))
    signed_in = client.post("/console/login", data={"email": "bench@agency.example", "password": PASSWORD,
                                                    "csrf_token": form.group(1)})
    assert signed_in.status_code == 302, signed_in.status_code

    def get(path: str, **kwargs):
        def call():
            response = client.get(path, **kwargs)
            assert response.status_code == 200, (path, response.status_code)
        return call

    auth = {"Authorization": f"Bearer {token}"}
    rows = [
        ("API store health (baseline)", timed(get("/api/v1/stores/store-1/health", headers=auth), args.runs)),
        ("console overview", timed(get("/console/"), args.runs)),
        ("console overview, filtered", timed(get("/console/?q=store-99&platform=shopify"), args.runs)),
        ("console store page", timed(get("/console/stores/store-1"), args.runs)),
        ("console event log", timed(get("/console/stores/store-1/events"), args.runs)),
    ]
    print(f"\n{label}: {args.events:,} events and {args.events // 10:,} deliveries over {args.stores:,} stores, "
          f"filled in {seconds:.1f} s; median of {args.runs} renders")
    for name, ms in rows:
        print(f"{name:<32} {ms:>8.1f} ms")
    engine.dispose()
    runtime.engine.dispose()
    return all(ms < TARGET_MS for name, ms in rows if name.startswith("console"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postgres", default=os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        ok = run("SQLite", f"sqlite:///{workdir}/console.db", args)
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in args.postgres else "?"
        ok = run("PostgreSQL", f"{args.postgres}{sep}options=-csearch_path%3D{schema}", args) and ok
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    print(f"\nevery console median under {TARGET_MS:.0f} ms: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
