"""The accuracy report: per store and UTC day, the paid orders (those reconciliation saw
paid in the platform, and those whose purchase event a webhook brought), the purchases
sent to Kwai, and for every paid order not sent, exactly one reason:

- `test order`, `waiting for a click` (unattributed, within the store's late-binding
  window), `no click ever` (unattributed, past it), `pending or retrying` (pending,
  sending or held), `dead (<Kwai's code>)`, `no purchase event` (the platform says paid,
  the store does not send purchases or its payload could not be converted).

So `paid_orders - sent == sum(reasons)` for every row. `sources` breaks the paid orders
down by where the bridge learned of them: `recovered by reconciliation` (its webhooks
never brought the purchase) and `not yet seen by reconciliation` (known from webhooks,
not listed by a pass yet).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.engine import Engine

import adapters
from adapters.convert import PURCHASE, kind_event
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import EventStatus, events, platform_orders, reading

RECOVERED = "recovered by reconciliation"
UNSEEN = "not yet seen by reconciliation"


@dataclass(frozen=True)
class Row:
    store: str
    day: str
    paid_orders: int
    sent: int
    reasons: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"store": self.store, "day": self.day, "paid_orders": self.paid_orders, "sent": self.sent,
                "reasons": dict(self.reasons), "sources": dict(self.sources)}


def reason(status: str, *, skip_reason: str | None, last_result: int | None, created_at: datetime,
           late_binding: timedelta, now: datetime) -> str | None:
    """Why a purchase event is not sent (None: it is). Pure."""
    if status == EventStatus.SENT:
        return None
    if status == EventStatus.SKIPPED:
        return "test order" if skip_reason == "test order" else f"skipped ({skip_reason})"
    if status == EventStatus.UNATTRIBUTED:
        return "waiting for a click" if now - created_at < late_binding else "no click ever"
    if status == EventStatus.DEAD:
        return f"dead ({last_result})" if last_result is not None else "dead"
    return "pending or retrying"


def accuracy(engine: Engine, stores: Iterable[StoreConfig], *, since: datetime, now: datetime) -> list[Row]:
    """The report's rows, by store then day, from `since` (a day) on."""
    first_day = since.date().isoformat()
    rows: list[Row] = []
    with reading(engine) as conn:
        for store in stores:
            adapter = adapters.REGISTRY[store.platform]
            name = kind_event(PURCHASE, adapter.TOPICS, store.conversion_options())
            o, e = platform_orders.c, events.c
            platform = {r.order_id: r for r in conn.execute(
                select(o.order_id, o.paid_day, o.test, o.recovered)
                .where(o.store_id == store.id, o.paid_day >= first_day))}
            # every purchase the store has since a day before (a late payment's event is
            # created after its day began)
            purchases = {}
            for r in conn.execute(select(e.business_key, e.status, e.skip_reason, e.last_result, e.created_at, e.event)
                                  .where(e.store_id == store.id, e.event_name == name,
                                         e.business_key.like(f"order:%:{name}"),
                                         e.created_at >= since - timedelta(days=1))):
                purchases[r.business_key.split(":")[1]] = r
            days: dict[str, Counter] = {}
            for order_id in set(platform) | set(purchases):
                seen, event = platform.get(order_id), purchases.get(order_id)
                day = seen.paid_day if seen is not None else json.loads(event.event)["event_time"][:10]
                if day < first_day:
                    continue
                tally = days.setdefault(day, Counter())
                tally["paid"] += 1
                if seen is None:
                    tally["source:" + UNSEEN] += 1
                elif seen.recovered:
                    tally["source:" + RECOVERED] += 1
                if event is None:
                    tally["reason:" + ("test order" if seen.test else "no purchase event")] += 1
                    continue
                why = reason(event.status, skip_reason=event.skip_reason, last_result=event.last_result,
                             created_at=event.created_at, late_binding=timedelta(hours=store.late_binding_hours),
                             now=now)
                tally["sent" if why is None else "reason:" + why] += 1
            for day in sorted(days):
                t = days[day]
                rows.append(Row(store.id, day, t["paid"], t["sent"],
                                {k.split(":", 1)[1]: n for k, n in sorted(t.items()) if k.startswith("reason:")},
                                {k.split(":", 1)[1]: n for k, n in sorted(t.items()) if k.startswith("source:")}))
    return rows


__all__ = ["RECOVERED", "UNSEEN", "Row", "accuracy", "reason"]
