"""Idle and slow clients against a real `kwai-bridge serve`: they must not hold up the
webhooks of everybody else, and the server lets go of them."""
from __future__ import annotations

import json
import resource
import socket
import threading
import time

import pytest
import requests

from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS, Served, bridge_env, store_entry, write_stores
from tests.signing import headers_for

pytestmark = pytest.mark.slow

#: A request head that never ends: a slow client sends it a byte at a time.
ENDLESS_HEAD = b"POST /webhooks/shopify/acme HTTP/1.1\r\nHost: bridge\r\nX-Slow: " + b"a" * 100_000


class Holders:
    """`idle` connections that send nothing and `slow` ones that send a header byte every
    `every` seconds, each opened again as soon as the server closes it, until `stop()`.
    Records how long the server let each one live."""

    def __init__(self, port: int, *, idle: int, slow: int, every: float = 0.5) -> None:
        self.port, self.every = port, every
        self.kinds = ["idle"] * idle + ["slow"] * slow
        self.lifetimes: dict[str, list[float]] = {"idle": [], "slow": []}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._hold, args=(kind,), daemon=True) for kind in self.kinds]

    def __enter__(self) -> "Holders":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _hold(self, kind: str) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                self._stop.wait(0.1)
                continue
            opened = time.monotonic()
            sock.settimeout(self.every)
            try:
                for byte in ENDLESS_HEAD:
                    if self._stop.is_set():
                        return
                    if kind == "slow":
                        sock.send(bytes([byte]))
                    try:
                        if not sock.recv(1024):
                            break  # closed by the server
                    except socket.timeout:
                        continue
                    break  # an answer, or a reset: either way the server let go
            except OSError:
                pass
            finally:
                sock.close()
            self.lifetimes[kind].append(time.monotonic() - opened)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("slow-clients")
    stores = write_stores(work / "stores.toml", [store_entry("shopify", "acme")])
    env = bridge_env(database_url=f"sqlite:///{work / 'kwai-bridge.db'}", stores=stores)
    with Served(env, workers=2) as served:
        yield served


def signed_order(n: int) -> tuple[bytes, dict[str, str]]:
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    order["id"] = 7_000_000 + n
    body = json.dumps(order).encode()
    return body, headers_for("shopify", "orders/create", shop=SHOPS["shopify"], secret=SECRETS["shopify"],
                             body=body)


def test_webhooks_are_answered_while_idle_and_slow_connections_are_open(served):
    with Holders(served.port, idle=50, slow=8):
        time.sleep(1)  # let them connect and take whatever they can take
        statuses = []
        for n in range(10):
            body, headers = signed_order(n)
            try:
                statuses.append(requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers,
                                              timeout=5).status_code)
            except requests.RequestException as exc:
                statuses.append(exc.__class__.__name__)
    assert statuses == [200] * 10


def test_a_connection_that_never_completes_its_request_head_is_dropped(served):
    with Holders(served.port, idle=1, slow=1) as holders:
        deadline = time.monotonic() + 60
        while not all(holders.lifetimes.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
    # The server allows 5 s (serving.HEAD_TIMEOUT); the margin is for a busy machine.
    first = {kind: lifetimes[:1] for kind, lifetimes in holders.lifetimes.items()}
    assert all(lifetimes and lifetimes[0] < 20 for lifetimes in first.values()), first


def test_each_connection_serves_one_request_then_closes(served):
    body, headers = signed_order(0)
    answer = requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Connection"] == "close"


@pytest.mark.postgres
def test_a_webhook_waiting_on_postgres_holds_up_nothing_else_in_its_worker(tmp_path, postgres_url):
    """psycopg must wait the gevent way in a served worker (it picks how it waits when it
    is imported): with one worker, a webhook stuck on a table lock leaves /healthz
    answering, and is answered itself once the lock goes."""
    import psycopg

    from kwai_bridge.db import make_engine, migrate

    engine = make_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    with Served(bridge_env(database_url=postgres_url, stores=stores), workers=1) as served, \
            psycopg.connect(postgres_url) as locker, psycopg.connect(postgres_url, autocommit=True) as watcher:
        locker.execute("lock table deliveries in access exclusive mode")
        answers: list[object] = []
        body, headers = signed_order(1)
        poster = threading.Thread(target=lambda: answers.append(requests.post(
            f"{served.url}/webhooks/shopify/acme", data=body, headers=headers, timeout=60).status_code))
        poster.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not watcher.execute(
                "select count(*) from pg_locks where not granted and relation = 'deliveries'::regclass").fetchone()[0]:
            time.sleep(0.1)
        try:
            health = requests.get(f"{served.url}/healthz", timeout=5).status_code
        except requests.RequestException as exc:
            health = exc.__class__.__name__
        locker.rollback()
        poster.join(60)
    assert health == 200, "the worker was blocked while its webhook waited on PostgreSQL"
    assert answers == [200]


def test_a_worker_holds_its_connections_even_under_a_low_descriptor_limit(tmp_path, sqlite_url):
    """systemd starts services with a soft limit of 1,024 descriptors: a worker must raise
    its own to hold WORKER_CONNECTIONS connections besides its database files."""
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme")])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))  # inherited by serve
    try:
        served = Served(bridge_env(database_url=sqlite_url, stores=stores), workers=1).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        with Holders(served.port, idle=300, slow=0):
            time.sleep(1)
            body, headers = signed_order(99)
            try:
                status = requests.post(f"{served.url}/webhooks/shopify/acme", data=body, headers=headers,
                                       timeout=10).status_code
            except requests.RequestException as exc:
                status = exc.__class__.__name__
    finally:
        served.__exit__(None, None, None)
    assert "Too many open files" not in served.output()
    assert status == 200
