"""Reconciliation: list each connected store's orders updated since its checkpoint (less
an overlap) and run every order whose events the outbox lacks through the webhook path
itself (`Pipeline.handle`: the same verification, parsing, conversion, attribution and
outbox), as the platform's order-update webhook would carry it, signed with the store's
secret. Its delivery key names the source (`reconcile:<order>:<updated>`).

An order whose webhooks arrived adds nothing: its business keys are known, so it is not
even stored as a delivery. Each page is committed before the checkpoint moves past it:
a crash repeats at most one page, and the repeat creates nothing (delivery keys and
business keys are unique). Every order seen is noted in `platform_orders` for the
accuracy report.
"""
from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Engine

import adapters
from adapters.convert import PURCHASE, kind_event, store_choices
from adapters.signing import hmac_sha256
from adapters.values import Conversion, Notification, WebhookRequest
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import chunked, events, platform_links, platform_orders, upsert_insert
from kwai_bridge.links import CONNECTED, DISCONNECTED, Link, Links
from kwai_bridge.pipeline import Pipeline
from kwai_bridge.platforms import CredentialsRefused, OrdersPage, PlatformError, Transport, client_for

log = logging.getLogger(__name__)

#: Orders changed this long before the checkpoint are listed again: a platform's clock
#: and its search index lag a little.
OVERLAP = timedelta(minutes=5)
#: The topic an order is reconciled as (an update: it yields the purchase once paid).
ORDER_TOPIC = {"shopify": "orders/updated", "shopline": "orders/updated", "woocommerce": "order.updated"}
SOURCE = "reconcile"


@dataclass
class PassReport:
    stores: int = 0
    orders_seen: int = 0
    recovered_events: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"stores": self.stores, "orders_seen": self.orders_seen, "recovered_events": self.recovered_events,
                "errors": dict(self.errors)}


# -- one order, as its webhook (pure) ------------------------------------------------------
def order_request(store: StoreConfig, order: Mapping[str, Any]) -> WebhookRequest:
    """The order-update webhook the platform would have sent for `order`, signed with the
    store's first webhook secret, its delivery key marking it as reconciliation's."""
    platform = store.platform
    adapter = adapters.REGISTRY[platform]
    body = orjson.dumps(order)
    signature = base64.b64encode(hmac_sha256(store.webhook_secrets[0], body)).decode()
    updated = order.get("updated_at") or order.get("date_modified_gmt") or ""
    delivery = f"{SOURCE}:{order.get('id')}:{updated}"
    if platform == "woocommerce":
        headers = {"x-wc-webhook-topic": ORDER_TOPIC[platform], "x-wc-webhook-source": store.shop + "/",
                   "x-wc-webhook-resource": "order", "x-wc-webhook-event": "updated",
                   "x-wc-webhook-delivery-id": delivery, adapter.SIGNATURE.name: signature}
    else:
        prefix = "x-shopify" if platform == "shopify" else "x-shopline"
        headers = {f"{prefix}-topic": ORDER_TOPIC[platform], adapter.SHOP_HEADER: store.shop,
                   f"{prefix}-webhook-id": delivery, adapter.SIGNATURE.name: signature}
    return WebhookRequest.build(headers, body)


@dataclass(frozen=True)
class Seen:
    """What reconciliation notes of an order: its id, paid day, test, keys it should have."""

    order_id: str
    paid_day: str | None
    test: bool
    keys: tuple[str, ...]


def seen(store: StoreConfig, order: Mapping[str, Any]) -> Seen:
    """The order as the adapter converts it (no I/O): paid or not, and the business keys of
    the events the store sends for it. A payload the adapter refuses has no keys."""
    adapter = adapters.REGISTRY[store.platform]
    options = store.conversion_options()
    note = Notification(platform=store.platform, topic=ORDER_TOPIC[store.platform], shop=store.shop, delivery_id=None,
                        payload=order)
    try:
        found: Sequence[Conversion] = adapter.to_conversions(note, options=options)
    except Exception:  # a conversion fault: the pipeline records it as it would a webhook's
        return Seen(str(order.get("id")), None, False, ("?",))
    paid_name = kind_event(PURCHASE, adapter.TOPICS, options)
    purchase = next((c for c in found if c.event.event_name == paid_name), None)
    return Seen(str(order.get("id")),
                purchase.event.event_time.date().isoformat() if purchase else None,
                bool(purchase and purchase.skip_reason == "test order"),
                tuple(c.event.idempotency_key for c in store_choices(found, options)))


# -- a pass ------------------------------------------------------------------------------------
class Reconciler:
    """Runs passes over stores with `pipeline` (the webhook path) into its outbox."""

    def __init__(self, engine: Engine, pipeline: Pipeline, *, backfill_hours: int = 72,
                 transport: Transport | None = None, page_size: int | None = None,
                 stop: threading.Event | None = None) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.links = Links(engine)
        self.backfill_hours = backfill_hours
        self.transport = transport
        self.page_size = page_size
        # Set when the worker stops: a pass ends after the page it is on (committed).
        self.stop = stop or threading.Event()

    def start_of(self, store: StoreConfig, link: Link | None, *, now: datetime, since: datetime | None) -> datetime:
        if since is not None:
            return since
        if link is not None and link.checkpoint is not None:
            return link.checkpoint - OVERLAP
        return now - timedelta(hours=store.reconcile_backfill_hours or self.backfill_hours)

    def run(self, stores: Sequence[StoreConfig], *, now: datetime, since: datetime | None = None) -> PassReport:
        """One pass over every store of `stores` that is connected (or whose refused
        credentials changed since)."""
        report = PassReport()
        links = self.links.all()
        for store in stores:
            link = links.get(store.id)
            if not self.links.usable(store, link):
                continue
            report.stores += 1
            try:
                seen_here, recovered = self.run_store(store, link, now=now, since=since)
            except CredentialsRefused as exc:
                self.links.set_status(store, DISCONNECTED, now=now, message=str(exc))
                log.warning("store %s: the platform refused the Admin API credentials (%s); not called again "
                            "until they change", store.id, exc)
                report.errors[store.id] = f"disconnected: {exc}"
                continue
            except PlatformError as exc:
                log.warning("store %s: reconciliation stopped: %s", store.id, exc)
                report.errors[store.id] = str(exc)
                continue
            report.orders_seen += seen_here
            report.recovered_events += recovered
        return report

    def run_store(self, store: StoreConfig, link: Link | None, *, now: datetime,
                  since: datetime | None = None) -> tuple[int, int]:
        """Reconcile one store; (orders seen, events recovered)."""
        client = client_for(store, transport=self.transport, page_size=self.page_size)
        start = self.start_of(store, link, now=now, since=since)
        orders = recovered = 0
        for page in client.orders(since=start):
            if link is None or link.status != CONNECTED:
                # the credentials work again: resume from the checkpoint
                self.links.set_status(store, CONNECTED, now=now)
                link = self.links.get(store.id)
            orders += len(page.orders)
            recovered += self.commit_page(store, page, now=now)
            if self.stop.is_set():
                break
        if orders == 0:
            with self.engine.begin() as conn:
                Links.advance(conn, store.id, checkpoint=None, now=now)
        log.info("store %s: reconciled %d order(s) changed since %s, %d event(s) recovered", store.id, orders,
                 start.isoformat(), recovered)
        return orders, recovered

    def commit_page(self, store: StoreConfig, page: OrdersPage, *, now: datetime) -> int:
        """Run the page's orders that lack events through the webhook path, then note the
        orders and move the checkpoint in one transaction; the events recovered."""
        noted = [seen(store, order) for order in page.orders]
        known = self._known(store.id, [k for s in noted for k in s.keys])
        recovered: dict[str, int] = {}
        for order, note in zip(page.orders, noted):
            if not note.keys or set(note.keys) <= known:
                continue
            answer = self.pipeline.handle(store.platform, store.id, order_request(store, order), now=now,
                                          at_once=True)
            if answer.status != 200:
                log.error("store %s: order %s from the API refused by the webhook path: %s", store.id,
                          note.order_id, answer.message)
                continue
            recovered[note.order_id] = int(answer.detail.get("events", 0))
        with self.engine.begin() as conn:
            if noted:
                insert = upsert_insert(conn.dialect)(platform_orders)
                rows = [{"store_id": store.id, "order_id": n.order_id, "paid_day": n.paid_day, "test": int(n.test),
                         "recovered": recovered.get(n.order_id, 0), "seen_at": now} for n in noted]
                conn.execute(insert.on_conflict_do_update(
                    index_elements=["store_id", "order_id"],
                    set_={"paid_day": insert.excluded.paid_day, "test": insert.excluded.test,
                          "recovered": platform_orders.c.recovered + insert.excluded.recovered,
                          "seen_at": insert.excluded.seen_at}), rows)
            current = conn.execute(select(platform_links.c.checkpoint)
                                   .where(platform_links.c.store_id == store.id)).scalar()
            moved = page.last_updated if current is None or (page.last_updated and page.last_updated > current) \
                else None
            Links.advance(conn, store.id, checkpoint=moved, now=now)
        return sum(recovered.values())

    def _known(self, store_id: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        e = events.c
        with self.engine.connect() as conn:
            for chunk in chunked(sorted(set(keys))):
                found.update(conn.execute(select(e.business_key).where(
                    e.store_id == store_id, e.business_key.in_(chunk))).scalars())
        return found


__all__ = ["ORDER_TOPIC", "OVERLAP", "PassReport", "Reconciler", "Seen", "order_request", "seen"]
