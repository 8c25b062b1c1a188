"""Known data sets for the read side's tests: events of several stores, stored through
the outbox as the webhook path stores them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import update

from adapters.values import Conversion
from kwai_bridge.db import events
from kwai_bridge.kwai.events import KwaiEvent
from kwai_bridge.outbox import Outbox

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
STORES = {"acme": "shopify", "line": "shopline", "woo": "woocommerce"}


def conversion(platform: str, key: str, *, name: str = "EVENT_PURCHASE", click_id: str | None = "CLICK.1",
               order_id: str | None = None, value: str = "10.28", source: str | None = "attribute") -> Conversion:
    event = KwaiEvent(event_name=name, event_time=T0 - timedelta(minutes=5), third_party=platform,
                      idempotency_key=key, click_id=click_id, value=Decimal(value), currency="BRL")
    return Conversion(event=event, click_source=source if click_id else None,
                      identifiers={"order_id": order_id} if order_id else {})


def accept(outbox: Outbox, store_id: str, key: str, *conversions: Conversion, at: datetime = T0,
           topic: str = "orders/paid", body: bytes = b'{"id": 1}') -> int:
    """Store one delivery and its events; return the delivery's id."""
    done = outbox.accept(store_id=store_id, platform=STORES[store_id], topic=topic, delivery_key=key,
                         received_at=at, body=body, headers={"X-Shopify-Topic": topic, "X-Shopify-Hmac-Sha256": "x"},
                         conversions=list(conversions))
    assert done.delivery_id is not None and not done.duplicate
    return done.delivery_id


def fill(outbox: Outbox, count: int, *, start: int = 0, at: datetime = T0) -> None:
    """`count` orders spread over the stores, each one delivery with one event of a name
    and (for every fourth) no click id."""
    names = ("EVENT_PURCHASE", "EVENT_PLACE_ORDER", "EVENT_ADD_TO_CART")
    stores = list(STORES)
    for i in range(start, start + count):
        store = stores[i % len(stores)]
        name = names[(i // len(stores)) % len(names)]
        accept(outbox, store, f"d{i}", conversion(STORES[store], f"order:{i}:{name}", name=name, order_id=str(i),
                                                  click_id=None if i % 4 == 3 else f"CLICK.{i}"), at=at)


def set_status(engine, ids, status: str, **values) -> None:
    """Put events in a status as the dispatcher would leave them (a data set's set-up)."""
    with engine.begin() as conn:
        conn.execute(update(events).where(events.c.id.in_(list(ids))).values(status=status, **values))
