"""Crash tests: processes killed with SIGKILL at the worst moment.

- The dispatcher killed while it holds leases: after a restart every acknowledged event
  reaches Kwai, and Kwai sees no more duplicates than events in flight at the kill.
- Two dispatchers on one PostgreSQL database never send the same event twice.
"""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from adapters.values import Conversion
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.outbox import Outbox
from kwai_bridge.kwai.events import KwaiEvent
from tests.fake_kwai import FakeKwai
from tests.serving import bridge_env, run_cli, start_worker, store_entry, write_stores

pytestmark = pytest.mark.slow

T0 = datetime.now(timezone.utc) - timedelta(minutes=1)


def queue_events(database_url: str, count: int) -> Outbox:
    engine = make_engine(database_url)
    migrate(engine)
    outbox = Outbox(engine)
    conversions = [
        Conversion(event=KwaiEvent(event_name="EVENT_PURCHASE", event_time=T0, third_party="shopify",
                                   idempotency_key=f"order:{i}:EVENT_PURCHASE", click_id=f"click-{i}"),
                   click_source="attribute")
        for i in range(count)
    ]
    for start in range(0, count, 250):
        outbox.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key=f"d{start}",
                      received_at=T0, body=b"{}", headers={}, conversions=conversions[start:start + 250])
    return outbox


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def drain(env: dict[str, str], outbox: Outbox, *, timeout: float) -> None:
    """Run `worker --once` until no event waits for a retry: a send that failed before
    the kill (a connection refused on a loaded machine) was rescheduled, and `--once`
    does not wait for it; a running dispatcher would send it when due."""
    deadline = time.monotonic() + timeout
    while True:
        done = run_cli(env, "worker", "--once")
        assert done.returncode == 0, done.stdout + done.stderr
        # A row a dispatcher claimed but did not send (it would have waited past its
        # lease's margin, on a loaded machine) comes back when its lease runs out.
        pending = outbox.list_events(status="pending", limit=1000)
        leased = outbox.list_events(status="sending", limit=1000)
        if not (pending or leased) or time.monotonic() > deadline:
            return
        due = min([row.next_attempt_at for row in pending] + [row.lease_until for row in leased])
        time.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.1)


def kill_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_dispatcher_killed_while_holding_leases_loses_nothing(tmp_path, sqlite_url):
    count = 300
    outbox = queue_events(sqlite_url, count)
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    with FakeKwai() as kwai:
        kwai.latency = 0.15
        # A short lease, so that the rows come back soon after the kill; the timeouts it
        # must exceed still outlast a SYN sent again after 1 s (16 senders connecting at
        # once can overflow the fake's listen queue on a loaded machine).
        env = bridge_env(database_url=sqlite_url, stores=stores, kwai_url=kwai.base_url,
                         DISPATCH_CONCURRENCY="16", LEASE_SECONDS="5",
                         KWAI_CONNECT_TIMEOUT="2.5", KWAI_TIMEOUT="2")
        worker = start_worker(env)
        wait_for(lambda: len(kwai.received) >= 60, timeout=60, what="deliveries to start")
        kill_group(worker)
        in_flight = outbox.counts().get("sending", 0)
        assert in_flight > 0, "the kill should land while leases are held"
        assert outbox.counts().get("sent", 0) < count

        time.sleep(5.1)  # the lease (5 s) must run out before the rows come back
        kwai.latency = 0
        # The restarted dispatcher runs with the default timeouts: a send timing out on a
        # loaded machine would be rescheduled, and `--once` does not wait for it.
        restart = {k: v for k, v in env.items() if k not in (
            "KWAI_BRIDGE_LEASE_SECONDS", "KWAI_BRIDGE_KWAI_CONNECT_TIMEOUT", "KWAI_BRIDGE_KWAI_TIMEOUT")}
        restart["KWAI_BRIDGE_LEASE_SECONDS"] = "15"  # just over the default timeouts: a row left unsent comes back soon
        drain(restart, outbox, timeout=120)

        assert {k: v for k, v in outbox.counts().items() if v} == {"sent": count}
        delivered = Counter(r.fields["clickid"] for r in kwai.successes())
        assert set(delivered) == {f"click-{i}" for i in range(count)}
        duplicates = sum(n - 1 for n in delivered.values())
        assert duplicates <= in_flight, (duplicates, in_flight)


@pytest.mark.postgres
def test_two_dispatchers_on_postgres_never_send_an_event_twice(tmp_path, postgres_url):
    count = 1000
    outbox = queue_events(postgres_url, count)
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    with FakeKwai() as kwai:
        kwai.latency = 0.002
        env = bridge_env(database_url=postgres_url, stores=stores, kwai_url=kwai.base_url,
                         DISPATCH_CONCURRENCY="8")
        workers = [start_worker(env), start_worker(env)]
        try:
            wait_for(lambda: outbox.counts().get("sent", 0) == count, timeout=120, what="all events sent")
        finally:
            for w in workers:
                os.killpg(w.pid, signal.SIGTERM)
            outputs = [w.communicate(timeout=30)[0] for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs
        delivered = Counter(r.fields["clickid"] for r in kwai.received)
        assert len(delivered) == count
        assert max(delivered.values()) == 1, delivered.most_common(3)
        owners = Counter(row.lease_owner for row in outbox.list_events(limit=count))
        assert len(owners) == 2, "both dispatchers should have taken part"
