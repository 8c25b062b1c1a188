"""Storefront events: what the snippet and Shopify's checkout pixel report from the
shopper's browser (a product viewed, a search, a cart add, a checkout step, a trigger the
store listed), as one Conversion. Pure, like the platforms' modules: the request was
checked by kwai_bridge.storefront; time comes in as a parameter.

The business key decides which events are one. A browser event that a webhook also
announces takes the webhook's key, so whichever arrives second is the same event:

- a cart add with its cart token and the cart's item count after the add:
  `cart:<token>:EVENT_ADD_TO_CART:<count>`, with the cart's high-water mark, as
  `carts/create` and `carts/update` key it (Shopify, Shopline);
- a checkout step with its checkout token: `checkout:<token>:<event>`, as
  `checkouts/create` keys EVENT_INITIATED_CHECKOUT (Shopify's pixel; also one
  EVENT_ADD_PAYMENT_INFO per checkout);
- anything else: `browser:<event id>:<event>`, the id the browser made (the same id
  twice is one event).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Mapping

from adapters.convert import Line, Priced, choose_value, cents, conversion, kind_event, line_fields
from adapters.values import Conversion, ConversionOptions

ADD_TO_CART = "EVENT_ADD_TO_CART"
INITIATED_CHECKOUT = "EVENT_INITIATED_CHECKOUT"
ADD_PAYMENT_INFO = "EVENT_ADD_PAYMENT_INFO"
#: What the snippet reports on its own, on every store whose `events` lists it.
FUNNEL_EVENTS = ("EVENT_CONTENT_VIEW", "EVENT_SEARCH", ADD_TO_CART, INITIATED_CHECKOUT, ADD_PAYMENT_INFO)
#: What it reports only where the store lists a trigger (`event_triggers`).
TRIGGERED_EVENTS = ("EVENT_BUTTON_CLICK", "EVENT_CONTACT", "EVENT_FORM_SUBMIT", "EVENT_SUBSCRIBE")
EVENTS = FUNNEL_EVENTS + TRIGGERED_EVENTS


@dataclass(frozen=True)
class BrowserEvent:
    """One storefront event as the browser reported it, already checked."""

    event: str
    event_id: str
    click_id: str
    product_id: str | None = None
    variant_id: str | None = None
    sku: str | None = None
    content_name: str | None = None
    content_category: str | None = None
    price: Decimal | None = None  # the unit price
    quantity: int | None = None
    value: Decimal | None = None  # the whole amount (a checkout's total)
    currency: str | None = None
    query: str | None = None
    cart_token: str | None = None
    item_count: int | None = None  # the cart's items after the add
    checkout_token: str | None = None


def business_key(event: BrowserEvent, name: str) -> tuple[str, tuple[str, int] | None, dict[str, str]]:
    """(business key, cart high-water mark, identifiers) of `event` sent as `name`."""
    if event.event == ADD_TO_CART and event.cart_token and event.item_count:
        return (f"cart:{event.cart_token}:{name}:{event.item_count}", (f"cart:{event.cart_token}", event.item_count),
                {"cart_token": event.cart_token})
    if event.event in (INITIATED_CHECKOUT, ADD_PAYMENT_INFO) and event.checkout_token:
        return f"checkout:{event.checkout_token}:{name}", None, {"checkout_token": event.checkout_token}
    return f"browser:{event.event_id}:{name}", None, {}


def to_conversion(event: BrowserEvent, *, platform: str, topics: Mapping[str, str], options: ConversionOptions,
                  now: datetime) -> Conversion:
    """The Conversion of a storefront event on a `platform` store whose webhooks yield
    `topics`: a cart add or a checkout takes the name the store gives that kind (a rename
    of `carts/update` renames the snippet's cart add too), so that both keys agree."""
    name = kind_event(event.event, topics, options) if event.event in (ADD_TO_CART, INITIATED_CHECKOUT) \
        else event.event
    key, high_water, identifiers = business_key(event, name)
    if event.value is not None:
        priced = choose_value([("", event.value, event.currency)], options)
    elif event.price is not None:
        priced = choose_value([("", cents(event.price, Decimal(event.quantity or 1)), event.currency)], options)
    else:
        priced = Priced(note="the browser reported no amount")
    fields = {}
    if event.product_id:
        line = Line(product_id=event.product_id, variant_id=event.variant_id, sku=event.sku,
                    title=event.content_name, quantity=event.quantity or 1, price=event.price,
                    category=event.content_category)
        fields = line_fields([line], options, priced=priced, order_name=None)
    elif event.content_name:
        fields = {"content_name": event.content_name}
    if event.query:
        fields["query"] = event.query
    return conversion(platform=platform, name=name, key=key, moment=now, priced=priced, fields=fields,
                      click=(event.click_id, "storefront"), identifiers=identifiers, high_water=high_water)


@dataclass(frozen=True)
class Trigger:
    """One entry of a store's `event_triggers`: `EVENT_NAME <css selector>` (a click on
    the element, or the submit of the form) or `EVENT_NAME url:<pattern>` (a page whose
    path and query match, `*` any text)."""

    event: str
    selector: str = ""
    url: str = ""

    def settings(self) -> dict[str, str]:
        return {"event": self.event, **({"url": self.url} if self.url else {"selector": self.selector})}


def parse_trigger(line: str) -> Trigger:
    """A trigger from its line; ValueError says what is wrong."""
    name, _, rest = line.strip().partition(" ")
    rest = rest.strip()
    if name not in TRIGGERED_EVENTS:
        raise ValueError(f"{line.strip()!r}: begin with one of {', '.join(TRIGGERED_EVENTS)}")
    if not rest or len(rest) > 300 or re.search(r"[<\x00-\x1f]", rest):
        raise ValueError(f"{line.strip()!r}: give a CSS selector (such as a[href^=\"https://wa.me/\"]) or "
                         "url:<path pattern> (such as url:/pages/thank-you*), at most 300 characters")
    if rest.startswith("url:"):
        if not rest[4:].startswith("/"):
            raise ValueError(f"{line.strip()!r}: a URL pattern starts with / (url:/contact*)")
        return Trigger(name, url=rest[4:])
    return Trigger(name, selector=rest)



def triggers(lines: Iterable[str], events: Iterable[str]) -> list[Trigger]:
    """The triggers of a store's `event_triggers` lines for the events it sends."""
    sent = set(events)
    return [t for t in map(parse_trigger, lines) if t.event in sent]


def snippet_events(events: Iterable[str]) -> list[str]:
    """The storefront events the snippet and the pixel report for a store sending `events`."""
    sent = set(events)
    return [name for name in EVENTS if name in sent]


__all__ = ["ADD_PAYMENT_INFO", "ADD_TO_CART", "EVENTS", "FUNNEL_EVENTS", "INITIATED_CHECKOUT", "TRIGGERED_EVENTS",
           "BrowserEvent", "Trigger", "business_key", "parse_trigger", "snippet_events", "to_conversion",
           "triggers"]
