"""The outbox tests' shared pieces: conversions, the database fixtures, and the calls the
webhook path and the dispatcher make, reduced to what a test needs."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from adapters.values import Conversion
from kwai_bridge.db import make_engine, migrate
from kwai_bridge.kwai.events import Content, KwaiEvent
from kwai_bridge.outbox import EventRow, Outbox

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
LEASE = 60


def conv(key: str, *, click: str | None = "clk-1", skip: str | None = None,
         high_water: tuple[str, int] | None = None, name: str = "EVENT_PURCHASE",
         **event_fields) -> Conversion:
    event = KwaiEvent(
        event_name=name, event_time=T0, third_party="shopify", idempotency_key=key,
        click_id=click, value=Decimal("19.90"), currency="USD",
        contents=(Content(id="p1", quantity=2, price=Decimal("9.95")),), **event_fields)
    return Conversion(event=event, click_source="attribute" if click else None, skip_reason=skip,
                      identifiers={"order_id": key}, high_water=high_water)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def box(engine):
    return Outbox(engine)


def accept(box: Outbox, delivery_key: str, conversions, *, store_id="store-a",
           received_at=T0, outcome="queued", body=b'{"id": 1}', headers=None):
    return box.accept(
        store_id=store_id, platform="shopify", topic="orders/paid", delivery_key=delivery_key,
        received_at=received_at, body=body,
        headers=headers or {"X-Shopify-Topic": "orders/paid"},
        conversions=conversions, outcome=outcome)


def queue(box: Outbox, n: int, *, store_id: str = "store-a", start: datetime = T0) -> list[int]:
    """`n` pending events of one store, due one second apart from `start`; their ids."""
    for i in range(n):
        accept(box, f"{store_id}-w-{i}", [conv(f"order:{i}:EVENT_PURCHASE")], store_id=store_id,
               received_at=start + timedelta(seconds=i))
    return sorted(r.id for r in box.list_events(store_id=store_id))


def claim(box: Outbox, *, now: datetime, limit: int, owner: str = "") -> list[int]:
    """Ids of the rows a dispatcher's claim leases (LEASE seconds)."""
    return [row.id for row in box.claim_for_sending(now=now, limit=limit, lease_seconds=LEASE, owner=owner)]


def event_of(box: Outbox, event_id: int) -> EventRow | None:
    return {row.id: row for row in box.list_events(limit=10_000)}.get(event_id)


def status_of(box: Outbox, event_id: int) -> str:
    return event_of(box, event_id).status
