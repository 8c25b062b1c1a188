"""The worker's platform jobs: for each connected store, check its webhook subscriptions
every `subscription_check_minutes` (a WooCommerce webhook paused or disabled is made
active again, a deleted Shopify or Shopline subscription is made again, each with one
alert saying when the gap began), and reconcile its orders every `reconcile_minutes`.

`due` is pure; `PlatformJobs` runs the jobs in a thread of the dispatcher process.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from kwai_bridge.alerts import SUBSCRIPTION, Message
from kwai_bridge.catalog import StoreRegistry
from kwai_bridge.config import StoreConfig
from kwai_bridge.connect import ConnectRefused, Step, connect
from kwai_bridge.db import deliveries, reading
from kwai_bridge.links import CONNECTED, DISCONNECTED, Link, Links
from kwai_bridge.periodic import Periodic
from kwai_bridge.platforms import CredentialsRefused, PlatformError, Transport, client_for
from kwai_bridge.reconcile import Reconciler
from kwai_bridge.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between two looks at which store has a job due.
TICK_SECONDS = 30.0


def due(last: datetime | None, minutes: int, *, now: datetime) -> bool:
    return last is None or now - last >= timedelta(minutes=minutes)


def describe(step: Step, gap_began: datetime | None) -> str:
    """One sentence for a restored subscription."""
    what = {"create": "was missing (deleted by the platform?) and is made again",
            "fix": f"was {step.why} and is repaired"}[step.action]
    since = f"; no delivery since {gap_began.isoformat().replace('+00:00', 'Z')}" if gap_began else ""
    return f"the {step.topic} webhook subscription {what}{since}"


def last_delivery(engine: Engine, store_id: str, topic: str) -> datetime | None:
    d = deliveries.c
    with reading(engine) as conn:
        return conn.execute(select(func.max(d.received_at)).where(d.store_id == store_id, d.topic == topic)).scalar()


def watch_store(store: StoreConfig, link: Link, *, engine: Engine, public_url: str, now: datetime,
                tell: Callable[[Message, StoreConfig], None], transport: Transport | None = None) -> list[str]:
    """Check and restore the store's subscriptions; one alert per one restored. The
    sentences of what was restored."""
    links = Links(engine)
    try:
        report, steps = connect(store, client_for(store, transport=transport), public_url=public_url)
    except CredentialsRefused as exc:
        links.set_status(store, DISCONNECTED, now=now, message=str(exc))
        log.warning("store %s: the platform refused the Admin API credentials: %s", store.id, exc)
        return []
    if link.status != CONNECTED:
        links.set_status(store, CONNECTED, now=now)
    links.watched(store.id, now=now)
    told = []
    for step in steps:
        if step.action == "ok" or any(e.startswith(step.topic + ":") for e in report.errors):
            continue
        gap = last_delivery(engine, store.id, step.topic) or link.watched_at
        sentence = describe(step, gap)
        log.warning("store %s: %s", store.id, sentence)
        tell(Message(store.id, SUBSCRIPTION, True, gap or now, sentence), store)
        told.append(sentence)
    for error in report.errors:
        log.warning("store %s: a webhook subscription could not be restored: %s", store.id, error)
    return told


class PlatformJobs:
    """The thread that watches subscriptions and reconciles, store by store, as each is due."""

    def __init__(self, *, engine: Engine, registry: StoreRegistry, reconciler: Reconciler, settings: Settings,
                 tell: Callable[[Message, StoreConfig], None], clock: Callable[[], datetime],
                 tick: float = TICK_SECONDS) -> None:
        self.engine, self.registry, self.reconciler, self.settings = engine, registry, reconciler, settings
        self.tell, self.clock = tell, clock
        self.links = Links(engine)
        self._periodic = Periodic(self.run_due, interval=tick, name="platform-jobs", join_timeout=60)

    def run_due(self) -> None:
        """Every job due now, once."""
        now = self.clock()
        links = self.links.all()
        for store in self.registry.stores:
            link = links.get(store.id)
            if self._periodic.stopping.is_set() or not self.links.usable(store, link):
                continue
            try:
                if due(link.watched_at, self.settings.per_store(store, "subscription_check_minutes"), now=now):
                    watch_store(store, link, engine=self.engine, public_url=self.settings.public_url, now=now,
                                tell=self.tell)
                    link = self.links.get(store.id)
                if link is not None and self.links.usable(store, link) and \
                        due(link.reconciled_at, self.settings.per_store(store, "reconcile_minutes"), now=now):
                    self.reconciler.run([store], now=now)
            except (ConnectRefused, PlatformError) as exc:
                log.warning("store %s: platform job not done: %s", store.id, exc)
            except Exception:
                log.exception("store %s: platform job failed; trying again later", store.id)

    def start(self) -> "PlatformJobs":
        self._periodic.start()
        return self

    def stop(self) -> None:
        self.reconciler.stop.set()
        self._periodic.stop()


__all__ = ["PlatformJobs", "describe", "due", "watch_store"]
