"""The later stages of an order, opt-in through a store's `events` (pure, like the
platforms' modules; each platform says what its order is, this decides what it yields):

- EVENT_COMPLETE_TRANSACTION once the order is fulfilled or completed, keyed
  `order:<id>:EVENT_COMPLETE_TRANSACTION`;
- EVENT_PURCHASE_1_DAY, _2_DAY, _3_DAY and _7_DAY beside the paid order's purchase, each
  sent only when the order was paid within N days (N x 24 h) of the click it is
  attributed to (see `within_days`, decided by kwai_bridge.attribution, which knows
  when the click was stored);
- a subscription renewal is kept but skipped, the reason recorded, unless the store's
  `subscription_renewals` is "purchase";
- an order cancelled or refunded withdraws its events: each one not sent yet becomes
  `skipped` with the reason (and one not received yet is refused when it comes); one
  already sent stays sent and is counted, since Kwai has no event to take it back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

from adapters.values import Conversion, ConversionOptions
from kwai_bridge.kwai.events import KwaiEvent

COMPLETE_TRANSACTION = "EVENT_COMPLETE_TRANSACTION"
#: The N-day purchases and their N.
DAY_PURCHASES: dict[str, int] = {f"EVENT_PURCHASE_{days}_DAY": days for days in (1, 2, 3, 7)}
RENEWAL_SKIP = 'subscription renewal: sent only when the store\'s subscription_renewals is "purchase"'


@dataclass(frozen=True)
class OrderStage:
    """What a platform read from an order about its later stages."""

    fulfilled: bool = False
    renewal: bool = False
    withdrawn: str | None = None  # "cancelled" or "refunded"
    moment: datetime | None = None  # when the order last changed


def later_stages(conversions: Sequence[Conversion], stage: OrderStage, *, order_id: str, platform: str,
                 names: Sequence[str], paid_name: str, options: ConversionOptions) -> list[Conversion]:
    """The order's conversions with its later stages applied; `names` are the events an
    order of this store can yield (what a withdrawal withdraws). The later stages are
    opt-in: yielded only when `options.events` names them."""
    chosen = options.events or frozenset()
    if stage.withdrawn is not None and stage.moment is not None:
        later = [name for name in (COMPLETE_TRANSACTION, *DAY_PURCHASES) if name in chosen]
        return withdrawals(order_id, stage.withdrawn, stage.moment, platform=platform,
                           names=[*names, paid_name, *later])
    found = list(conversions)
    paid = next((c for c in found if c.event.idempotency_key == f"order:{order_id}:{paid_name}"), None)
    if paid is not None:
        found += [replace(paid, event=_renamed(paid.event, name, order_id), within_days=days)
                  for name, days in DAY_PURCHASES.items() if name in chosen]
    if stage.fulfilled and found and COMPLETE_TRANSACTION in chosen:
        template = paid or found[0]
        found.append(replace(template, event=_renamed(template.event, COMPLETE_TRANSACTION, order_id,
                                                      moment=stage.moment), within_days=None))
    if stage.renewal and options.subscription_renewals != "purchase":
        found = [replace(c, skip_reason=c.skip_reason or RENEWAL_SKIP) for c in found]
    return found


def withdrawals(order_id: str, why: str, moment: datetime, *, platform: str, names: Sequence[str]) -> list[Conversion]:
    """One withdrawal per event name the order may have yielded."""
    return [Conversion(event=KwaiEvent(event_name=name, event_time=moment, third_party=platform,
                                       idempotency_key=f"order:{order_id}:{name}"),
                       skip_reason=f"order {why} before it was sent", withdraw=True)
            for name in dict.fromkeys(names)]


def _renamed(event: KwaiEvent, name: str, order_id: str, *, moment: datetime | None = None) -> KwaiEvent:
    return replace(event, event_name=name, idempotency_key=f"order:{order_id}:{name}",
                   event_time=moment or event.event_time)


def day_window_skip(conversion: Conversion, clicked_at: datetime | None) -> str | None:
    """Why an N-day purchase is not sent (None: it is), given when its click was stored."""
    days = conversion.within_days
    if days is None:
        return None
    if clicked_at is None:
        return (f"{conversion.event.event_name}: the click's time is unknown (it was not reported by the "
                "storefront snippet or the plugin)")
    if conversion.event.event_time - clicked_at > timedelta(days=days):
        return f"{conversion.event.event_name}: paid more than {days} day(s) after the click"
    return None


__all__ = ["COMPLETE_TRANSACTION", "DAY_PURCHASES", "RENEWAL_SKIP", "OrderStage", "day_window_skip", "later_stages",
           "withdrawals"]
