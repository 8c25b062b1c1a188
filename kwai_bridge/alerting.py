"""The alert sender: a thread of the dispatcher process that reads the facts from the
database, decides (kwai_bridge.alerts), claims each message in `alert_state` and POSTs it
as JSON to KWAI_BRIDGE_ALERT_WEBHOOK_URL and the store's own `alert_webhook_url`.

Claiming before sending (a conditional update) keeps two dispatchers from telling the
same thing twice. A receiver that fails is tried a few times, then the message is logged
and dropped: alerts never hold up dispatch, and never storm a receiver that came back.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Iterable, Sequence

import requests
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from kwai_bridge.alerts import Facts, Message, Said, conditions, decide
from kwai_bridge.catalog import StoreRegistry
from kwai_bridge.config import expected_topics
from kwai_bridge.db import EventStatus, alert_state, deliveries, events, reading, upsert_insert
from kwai_bridge.kwai.client import TOKEN_REFUSED
from kwai_bridge.periodic import Periodic

log = logging.getLogger(__name__)

#: Seconds between two looks at the facts.
CHECK_SECONDS = 60.0
#: Seconds to wait before each new try at a failing receiver.
RETRY_DELAYS = (1.0, 5.0, 15.0)
POST_TIMEOUT = 10.0


def read_facts(engine: Engine, stores: Iterable, *, now: datetime) -> Facts:
    """The facts of every store in `stores`, each an index range read (see kwai_bridge.backlog)."""
    e, d = events.c, deliveries.c
    stores = list(stores)
    with reading(engine) as conn:
        held = {row[0]: (row[1], row[2]) for row in conn.execute(
            select(e.store_id, func.count(), func.min(e.updated_at))
            .where(e.status == EventStatus.HELD, e.last_result == TOKEN_REFUSED).group_by(e.store_id))}
        dead = {row[0]: (row[1], row[2]) for row in conn.execute(
            select(e.store_id, func.count(), func.min(e.updated_at))
            .where(e.status == EventStatus.DEAD).group_by(e.store_id))}
        due = dict(conn.execute(select(e.store_id, func.min(e.next_attempt_at))
                                .where(e.status == EventStatus.PENDING, e.next_attempt_at <= now)
                                .group_by(e.store_id)).all())
        last: dict[str, dict[str, datetime]] = {}
        for store in stores:
            for topic in expected_topics(store):
                # newest first through (store_id, id): quick for a busy topic, and a quiet
                # one is read once a minute at most
                at = conn.execute(select(d.received_at).where(d.store_id == store.id, d.topic == topic)
                                  .order_by(d.id.desc()).limit(1)).scalar()
                if at is not None:
                    last.setdefault(store.id, {})[topic] = at
    return Facts(held=held, dead=dead, oldest_due=due, last_delivery=last,
                 quiet_hours={s.id: s.quiet_hours for s in stores})


def read_said(conn: Connection) -> dict[tuple[str, str], Said]:
    """What was last said, by (store, kind)."""
    return {(row.store_id, row.kind): Said(bool(row.firing), row.since, row.last_sent_at)
            for row in conn.execute(select(alert_state))}


def claim(conn: Connection, message: Message, before: Said | None, *, now: datetime) -> bool:
    """Record `message` as said, unless another process recorded something since `before`."""
    a = alert_state.c
    values = {"firing": int(message.firing), "since": message.since, "last_sent_at": now}
    if before is None:
        insert = upsert_insert(conn.dialect)(alert_state).values(store_id=message.store, kind=message.kind, **values)
        return conn.execute(insert.on_conflict_do_nothing().returning(a.kind)).first() is not None
    return conn.execute(update(alert_state).where(
        a.store_id == message.store, a.kind == message.kind, a.firing == int(before.firing),
        a.last_sent_at == before.last_sent_at).values(**values)).rowcount == 1


class AlertSender:
    """Looks at the facts every `interval` seconds and sends what `decide` says."""

    def __init__(self, engine: Engine, registry: StoreRegistry, *, url: str, clock: Callable[[], datetime],
                 session: requests.Session | None = None, retry_delays: Sequence[float] = RETRY_DELAYS,
                 interval: float = CHECK_SECONDS) -> None:
        self.engine = engine
        self.registry = registry
        self.url = url
        self.clock = clock
        self.session = session or requests.Session()
        self.retry_delays = tuple(retry_delays)
        self._periodic = Periodic(self.check, interval=interval, name="looking for alerts")

    def check(self) -> list[Message]:
        """Look once: decide, claim and send; return the messages sent (or given up on)."""
        now = self.clock()
        stores = list(self.registry.stores)
        holding = conditions(read_facts(self.engine, stores, now=now), now=now)
        with self.engine.begin() as conn:
            said = read_said(conn)
            claimed = [m for m in decide(holding, said, now=now) if claim(conn, m, said.get((m.store, m.kind)), now=now)]
        by_id = {s.id: s for s in stores}
        for message in claimed:
            store = by_id.get(message.store)
            for url in dict.fromkeys(u for u in (self.url, store.alert_webhook_url if store else "") if u):
                self._post(url, message)
        return claimed

    def tell(self, message: Message, *, store_url: str = "") -> None:
        """Send a one-off message (something that happened, not a condition that holds)
        to the global receiver and the store's own."""
        for url in dict.fromkeys(u for u in (self.url, store_url) if u):
            self._post(url, message)

    def _post(self, url: str, message: Message) -> None:
        for delay in (0.0, *self.retry_delays):
            if delay and self._periodic.stopping.wait(delay):
                break
            try:
                answer = self.session.post(url, json=message.payload(), timeout=POST_TIMEOUT)
                if answer.status_code < 300:
                    return
                problem = f"HTTP {answer.status_code}"
            except requests.RequestException as exc:  # its message repeats the URL, a credential
                problem = exc.__class__.__name__
            log.warning("alert %s for store %s not delivered (%s)", message.kind, message.store, problem)
        log.error("alert %s for store %s dropped after %d tries: %s", message.kind, message.store,
                  len(self.retry_delays) + 1, message.payload()["text"])

    def start(self) -> "AlertSender":
        self._periodic.start()
        return self

    def stop(self) -> None:
        self._periodic.stop()
