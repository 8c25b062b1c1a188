"""The chaos run, shared by `tests/test_chaos.py` (short, in `make test`) and
`benchmarks/chaos.py` (long, in `make bench`).

Mixed signed webhooks from all three platforms go to a real `kwai-bridge serve
--with-worker` while processes are killed with SIGKILL (the dispatcher, a web worker,
or serve with everything under it), PostgreSQL may be restarted once, and the fake
Kwai fails a share of requests with 5xx, timeouts and 429s with absurd Retry-After
values. Each webhook is sent again until it is acknowledged (a 200 with status
`queued`, or `duplicate` when an earlier try was stored but its answer lost in a kill),
as Shopify and Shopline do. Then Kwai recovers and the outbox drains.

Every conversion has its own click id, so deliveries are counted per business key
(event name, click id) at the fake. The run holds when every acknowledged conversion
was delivered (lost: none), nothing else was, and a conversion was delivered twice only
if it was in flight at a kill: leased to the dispatcher that was killed (read from the
outbox right after the kill, before its lease could run out) or, at the database's
restart, leased while outcomes could not be recorded.

Time: the retry schedule's waits (10 s, 1 min, ...) and the lease of a killed
dispatcher are not what this run tests (tests/test_retry.py, tests/test_crash.py do),
so once the traffic ends, waiting events are made due and dead dispatchers' leases
expire by moving those times to now in the database, as if the time had passed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from random import Random
from typing import Callable, Sequence

import requests
from sqlalchemy import func, select, update

from kwai_bridge.db import EventStatus, events, make_engine
from tests.conftest import fixture_bytes
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, Served, bridge_env, run_cli, store_entry, write_stores
from tests.signing import headers_for

#: What is killed, in turn: the dispatcher serve supervises, one of gunicorn's web
#: workers, or serve itself with everything under it (then started again).
KILL_KINDS = ("dispatcher", "web worker", "serve")

_ORDER = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
_CHECKOUT = json.loads(fixture_bytes("shopify/shopify_checkouts_create.json", shop=SHOPS["shopify"]))
_SHOPLINE_ORDER = json.loads(fixture_bytes("shopline/shopline_orders_create.DERIVED_FROM_SDK.json", shop=SHOPS["shopline"]))
_WOO_ORDER = json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json", shop=SHOPS["woocommerce"]))


@dataclass(frozen=True)
class Webhook:
    """One signed delivery and the events (name, click id) it must become."""

    platform: str
    topic: str
    body: bytes
    expected: frozenset[tuple[str, str]]

    @property
    def path(self) -> str:
        return f"/webhooks/{self.platform}/{self.platform}-store"

    def headers(self) -> dict[str, str]:
        return headers_for(self.platform, self.topic, shop=SHOPS[self.platform],
                           secret=SECRETS[self.platform], body=self.body)


def _attrs(click: str) -> list[dict[str, str]]:
    return [{"name": "kwai_click_id", "value": click}]


def make_webhook(n: int, rng: Random) -> Webhook:
    """The `n`th webhook of the run: a kind drawn with `rng`, its own ids and click id."""
    click = f"chaos-{n}-" + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz+/=") for _ in range(10))
    order_id = 5_000_000_000 + n
    kind = rng.randrange(6)
    if kind == 0:
        body = {**_ORDER, "id": order_id, "test": False, "financial_status": "paid", "note_attributes": _attrs(click)}
        return Webhook("shopify", "orders/paid", _dump(body), frozenset({("EVENT_PURCHASE", click)}))
    if kind == 1:
        body = {**_ORDER, "id": order_id, "test": False, "financial_status": "pending",
                "note_attributes": _attrs(click)}
        return Webhook("shopify", "orders/create", _dump(body), frozenset({("EVENT_PLACE_ORDER", click)}))
    if kind == 2:
        body = {**_CHECKOUT, "token": f"chk-{n}", "cart_token": f"cart-{n}", "note_attributes": _attrs(click)}
        return Webhook("shopify", "checkouts/create", _dump(body), frozenset({("EVENT_INITIATED_CHECKOUT", click)}))
    if kind == 3:
        body = {**_SHOPLINE_ORDER, "id": str(order_id), "financial_status": "paid",
                "landing_site": f"/?click_id={requests.utils.quote(click, safe='')}"}
        return Webhook("shopline", "orders/paid", _dump(body), frozenset({("EVENT_PURCHASE", click)}))
    paid = kind == 4
    body = {**_WOO_ORDER, "id": order_id, "number": str(order_id), "order_key": f"wc_order_{n}",
            "status": "processing" if paid else "on-hold",
            "date_paid": "2026-11-05T10:00:00" if paid else None,
            "date_paid_gmt": "2026-11-05T13:00:00" if paid else None,
            "meta_data": [{"id": 1, "key": "_kwai_click_id", "value": click}]}
    expected = {("EVENT_PLACE_ORDER", click)} | ({("EVENT_PURCHASE", click)} if paid else set())
    return Webhook("woocommerce", "order.created", _dump(body), frozenset(expected))


def _dump(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Plan:
    """How big a run is and what goes wrong during it."""

    webhooks: int
    kills: Sequence[str]  # from KILL_KINDS, spread evenly over the traffic
    restart_database: Callable[[], None] | None = None  # restarts the server, halfway through
    failure_share: float = 0.2
    senders: int = 6
    rate: float = 30.0  # webhooks a second at most, so that kills land while the dispatcher works
    resend_share: float = 0.1  # deliveries a platform sends twice (a retry, a second subscription)
    seed: int = 9
    timeout: float = 300.0  # for each phase: traffic, drain


@dataclass
class Report:
    """What a run saw; `problems` is empty when it held."""

    webhooks: int = 0
    acknowledged: int = 0
    answered_duplicate: int = 0
    resent: int = 0
    send_errors: int = 0
    conversions: int = 0
    kills: list[str] = field(default_factory=list)
    database_restarts: int = 0
    in_flight: int = 0  # conversions leased by a killed dispatcher (or at the restart)
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    kwai_requests: int = 0
    kwai_failures: dict[str, int] = field(default_factory=dict)
    traffic_seconds: float = 0.0
    drain_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.webhooks} webhooks ({self.acknowledged} acknowledged, {self.resent} sent twice on purpose, "
                f"{self.send_errors} tries failed in kills), {self.conversions} conversions; "
                f"kills: {', '.join(self.kills) or 'none'}; database restarts: {self.database_restarts}; "
                f"Kwai: {self.kwai_requests} requests, failures {self.kwai_failures}; "
                f"in flight at a kill: {self.in_flight}, delivered twice: {self.duplicates}, "
                f"lost: {self.lost}, unexpected: {self.unexpected}; "
                f"traffic {self.traffic_seconds:.1f} s, drain {self.drain_seconds:.1f} s")


class _Traffic:
    """Sender threads: each webhook is posted until acknowledged."""

    def __init__(self, served: Callable[[], Served], webhooks: Sequence[Webhook], *, senders: int,
                 rate: float, resend: set[int], deadline: float) -> None:
        self.served = served
        self.rate = rate
        self.webhooks = webhooks
        self.resend = resend
        self.deadline = deadline
        self.acked: list[int] = []
        self.duplicate_answers = 0
        self.errors = 0
        self.failures: list[str] = []
        self._next = iter(range(len(webhooks)))
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(senders)]

    def start(self) -> "_Traffic":
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    @property
    def done(self) -> int:
        with self._lock:
            return len(self.acked)

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _take(self) -> int | None:
        with self._lock:
            return next(self._next, None)

    def _run(self) -> None:
        with requests.Session() as session:
            while (n := self._take()) is not None:
                time.sleep(max(0.0, self._started + n / self.rate - time.monotonic()))
                for _ in range(2 if n in self.resend else 1):
                    if not self._deliver(session, n):
                        return

    def _deliver(self, session: requests.Session, n: int) -> bool:
        webhook = self.webhooks[n]
        while time.monotonic() < self.deadline:
            try:
                answer = session.post(self.served().url + webhook.path, data=webhook.body,
                                      headers=webhook.headers(), timeout=30)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.status_code == 200:
                status = answer.json().get("status")
                with self._lock:
                    if status in ("received", "queued"):  # converted by the worker, or at once
                        self.acked.append(n)
                        if status == "queued" and answer.json().get("events") != len(webhook.expected):
                            self.failures.append(f"webhook {n}: {answer.text.strip()} for {sorted(webhook.expected)}")
                    elif status == "duplicate":
                        self.duplicate_answers += 1
                        if n not in self.acked:  # stored by a try whose answer a kill lost
                            self.acked.append(n)
                    else:
                        self.failures.append(f"webhook {n}: {answer.text.strip()}")
                return True
            with self._lock:
                self.errors += 1
            if answer is not None and answer.status_code < 500:
                with self._lock:
                    self.failures.append(f"webhook {n}: HTTP {answer.status_code} {answer.text.strip()[:200]}")
                return True
            time.sleep(0.05)  # the server is being killed or restarted: try again
        with self._lock:
            self.failures.append(f"webhook {n}: not acknowledged before the deadline")
        return False


def run_chaos(plan: Plan, *, database_url: str, workdir: Path, log: Callable[[str], None] = lambda _: None) -> Report:
    """Run `plan` against `database_url` (an empty database); return what was seen."""
    rng = Random(plan.seed)
    report = Report(webhooks=plan.webhooks)
    webhooks = [make_webhook(n, rng) for n in range(plan.webhooks)]
    resend = {n for n in range(plan.webhooks) if rng.random() < plan.resend_share}
    report.resent = len(resend)
    stores = write_stores(workdir / "stores.toml", [store_entry(p, f"{p}-store") for p in SHOPS])
    engine = make_engine(database_url)
    allowed: Counter[tuple[str, str]] = Counter()  # conversion -> times it was in flight at a kill

    with FakeKwai() as kwai:
        kwai.chaos(plan.failure_share, rng=Random(plan.seed + 1))
        # Short Kwai timeouts, so that a "timeout" costs a sender little; a lease that
        # covers rows queued behind 4 x concurrency sends of up to 4 s each (a killed
        # dispatcher's rows are expired by hand, see _drain).
        env = bridge_env(database_url=database_url, stores=stores, kwai_url=kwai.base_url,
                         DISPATCH_CONCURRENCY="16", KWAI_CONNECT_TIMEOUT="2", KWAI_TIMEOUT="2",
                         LEASE_SECONDS="30", LOG_LEVEL="ERROR")
        if database_url.startswith("postgresql"):
            done = run_cli(env, "migrate")
            if done.returncode != 0:
                raise RuntimeError(done.stdout + done.stderr)
        served = Served(env, workers=2, extra_args=["--with-worker"]).start(timeout=60)
        current = [served]
        outputs: list[str] = []  # what each serve printed, once it stopped
        killed: set[str] = set()  # lease owners of the dispatchers killed
        started = time.monotonic()
        traffic = _Traffic(lambda: current[0], webhooks, senders=plan.senders, rate=plan.rate, resend=resend,
                           deadline=started + plan.timeout).start()
        try:
            events_at = _spread(plan, plan.webhooks)
            for at, what in events_at:
                _wait(lambda: traffic.done >= at or not traffic.running, timeout=plan.timeout,
                      what=f"{at} webhooks acknowledged")
                if what == "database":
                    in_flight = _restart_database(plan.restart_database, engine, log, killed)
                    report.database_restarts += 1
                else:
                    in_flight = _kill(what, current, engine, log, outputs, killed)
                    report.kills.append(what)
                allowed.update(in_flight)
            traffic.join()
            report.traffic_seconds = time.monotonic() - started
            report.acknowledged = len(set(traffic.acked))
            report.answered_duplicate = traffic.duplicate_answers
            report.send_errors = traffic.errors
            report.problems += traffic.failures[:20]

            # What waits for a retry, or for a killed dispatcher's lease, is made due now
            # (see the module docstring); Kwai goes on failing until the outbox is empty.
            expected = Counter(pair for n in set(traffic.acked) for pair in webhooks[n].expected)
            report.conversions = len(expected)
            drained = time.monotonic()
            _drain(engine, kwai, expected, killed=killed, timeout=plan.timeout)
            report.drain_seconds = time.monotonic() - drained
            kwai.chaos(0, rng=Random(0))
            ready = requests.get(current[0].url + "/readyz", timeout=30)
            if ready.status_code != 200:
                report.problems.append(f"/readyz after the run: {ready.status_code} {ready.text.strip()}")
        finally:
            current[0].__exit__(None, None, None)
            outputs.append(current[0].output())
        _judge(report, expected, Counter(_key(r.fields) for r in kwai.successes()), allowed, engine)
        # Each kill of the dispatcher alone is logged at ERROR by serve; serve killed with
        # everything under it might just see its dispatcher die first.
        logged = sum(out.count("ERROR kwai_bridge.supervisor: dispatcher (pid ") for out in outputs)
        alone = report.kills.count("dispatcher")
        if not alone <= logged <= alone + report.kills.count("serve"):
            report.problems.append(f"{logged} dispatcher death(s) logged at ERROR for {alone} kill(s) "
                                   "of the dispatcher alone")
        report.kwai_requests = len(kwai.received)
        report.kwai_failures = dict(kwai.chaos_counts)
    engine.dispose()
    return report


def _spread(plan: Plan, count: int) -> list[tuple[int, str]]:
    """(acknowledged webhooks, what happens then): the kills evenly over the traffic,
    the database restart halfway."""
    steps = [(count * (i + 1) // (len(plan.kills) + 1), kind) for i, kind in enumerate(plan.kills)]
    if plan.restart_database is not None:
        steps.append((count // 2, "database"))
    return sorted(steps, key=lambda step: step[0])


def _key(fields: dict) -> tuple[str, str]:
    return fields.get("event_name", ""), fields.get("clickid", "")


def _leased(engine, *, owner: str | None = None, not_to: set[str] = frozenset()) -> Counter[tuple[str, str]]:
    """The conversions leased now: to `owner`, or to anyone but those in `not_to`."""
    e = events.c
    stmt = select(e.event_name, e.event).where(e.status == EventStatus.SENDING)
    if owner is not None:
        stmt = stmt.where(e.lease_owner == owner)
    if not_to:
        stmt = stmt.where(e.lease_owner.not_in(sorted(not_to)))
    with engine.connect() as conn:
        return Counter((name, json.loads(record).get("click_id") or "") for name, record in conn.execute(stmt))


def _kill(what: str, current: list[Served], engine, log, outputs: list[str], killed: set[str]
          ) -> Counter[tuple[str, str]]:
    """Kill `what` with SIGKILL; return the conversions the killed dispatcher held."""
    served = current[0]
    dispatcher = _wait(served.dispatcher_pid, timeout=60, what="a running dispatcher")
    owner = _owner(dispatcher)
    if what == "dispatcher":
        killed.add(owner)
        os.kill(dispatcher, signal.SIGKILL)
        _wait(lambda: not _alive(dispatcher), timeout=30, what="the dispatcher to die")
        held = _leased(engine, owner=owner)
    elif what == "web worker":
        web = [pid for pid, argv in served.children() if pid != dispatcher]
        os.kill(web[0], signal.SIGKILL)
        held = Counter()
    else:  # serve, with its web workers and its dispatcher (one process group)
        killed.add(owner)
        served.kill(signal.SIGKILL)
        held = _leased(engine, owner=owner)
        outputs.append(served.output())
        current[0] = Served(served.env, workers=served.workers, port=served.port,
                            extra_args=served.extra_args).start(timeout=60)
    log(f"killed {what} (dispatcher {owner} held {sum(held.values())} leased event(s))")
    return held


def _restart_database(restart: Callable[[], None], engine, log, killed: set[str]) -> Counter[tuple[str, str]]:
    """Restart the database server. An outcome the dispatcher cannot record while it is
    down leaves its event leased: every row leased (by a dispatcher not killed before)
    once it is back was in flight."""
    restart()
    (held,) = _wait(lambda: _try(lambda: (_leased(engine, not_to=killed),)), timeout=120,
                    what="the database to answer again")
    log(f"database restarted ({sum(held.values())} leased event(s) in flight)")
    return held


def _try(read):
    try:
        return read()
    except Exception:  # the database is still restarting
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent reaps it: dead all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _owner(pid: int) -> str:
    """The lease owner a dispatcher with process id `pid` on this machine writes."""
    return f"{os.uname().nodename}:{pid}"


def _drain(engine, kwai: FakeKwai, expected: Counter, *, killed: set[str], timeout: float) -> None:
    """Make waiting events due and the leases of `killed` dispatchers expire, until every
    event is sent and Kwai has every expected conversion. (Rows whose outcome could not
    be recorded while the database restarted stay leased to a live dispatcher: those
    wait for their lease to run out.)"""
    deadline = time.monotonic() + timeout
    e = events.c
    while time.monotonic() < deadline:
        now = datetime.now(timezone.utc)
        with engine.begin() as conn:
            conn.execute(update(events).where(e.status == EventStatus.PENDING, e.next_attempt_at > now)
                         .values(next_attempt_at=now))
            if killed:
                conn.execute(update(events).where(e.status == EventStatus.SENDING, e.lease_owner.in_(killed),
                                                  e.lease_until > now)
                             .values(lease_until=now))
            left = conn.execute(select(e.id).where(e.status != EventStatus.SENT).limit(1)).first()
        delivered = {_key(r.fields) for r in kwai.successes()}
        if left is None and set(expected) <= delivered:
            return
        time.sleep(0.2)
    raise AssertionError("the outbox did not drain in time")


def _judge(report: Report, expected: Counter, delivered: Counter, allowed: Counter, engine) -> None:
    lost = set(expected) - set(delivered)
    unexpected = set(delivered) - set(expected)
    twice = {key: n - 1 for key, n in delivered.items() if n > 1}
    report.lost, report.unexpected = len(lost), len(unexpected)
    report.duplicates = sum(twice.values())
    report.in_flight = sum(1 for key in allowed if allowed[key])
    if lost:
        report.problems.append(f"{len(lost)} acknowledged conversion(s) never delivered: {sorted(lost)[:5]}")
    if unexpected:
        report.problems.append(f"{len(unexpected)} delivered conversion(s) nobody acknowledged: {sorted(unexpected)[:5]}")
    beyond = {key: extra for key, extra in twice.items() if extra > allowed.get(key, 0)}
    if beyond:
        report.problems.append(f"{len(beyond)} conversion(s) delivered twice without being in flight at a kill: "
                               f"{sorted(beyond)[:5]}")
    e = events.c
    with engine.connect() as conn:
        statuses = Counter(dict(conn.execute(select(e.status, func.count()).group_by(e.status)).all()))
    if set(statuses) != {EventStatus.SENT} or statuses[EventStatus.SENT] != len(expected):
        report.problems.append(f"outbox after the run: {dict(statuses)}, expected {len(expected)} sent")


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def postgres_cluster(url: str) -> tuple[str, str] | str:
    """(version, name) of the local cluster serving `url`, to restart with
    pg_ctlcluster, or why this process may not control it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    if parsed.host not in ("127.0.0.1", "localhost", "::1", None):
        return f"the server at {parsed.host} is not on this machine"
    if os.geteuid() != 0:
        return "restarting it needs root (pg_ctlcluster)"
    try:
        listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "pg_lsclusters is not available"
    port = str(parsed.port or 5432)
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == port and fields[3] == "online":
            return fields[0], fields[1]
    return f"no local cluster online on port {port}"
