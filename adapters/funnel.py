"""Kwai's 32 events and where each can come from: the platforms' webhook topics (read
from each adapter's TOPICS), the storefront snippet and Shopify's checkout pixel
(adapters.storefront), a store's own triggers, the later stages of an order
(adapters.later), and the names a store sends unless its `events` says otherwise.

`markdown()` is the README's table, so that the manual says what the code does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import adapters
from adapters.later import COMPLETE_TRANSACTION, DAY_PURCHASES
from adapters.storefront import TRIGGERED_EVENTS
from kwai_bridge.kwai.events import EVENT_NAMES

#: Kinds of source.
WEBHOOK = "webhook"  # the platform's webhooks
STOREFRONT = "storefront"  # the snippet on the store's own pages
CHECKOUT_PIXEL = "checkout pixel"  # Shopify's custom pixel, in the checkout
OPT_IN = "opt-in"  # sent only for a store that lists what triggers it

#: What a store sends when its `events` is not given: the conversions on by default, and
#: the funnel's earlier steps.
DEFAULT_EVENTS: tuple[str, ...] = (
    "EVENT_CONTENT_VIEW", "EVENT_SEARCH", "EVENT_ADD_TO_CART", "EVENT_INITIATED_CHECKOUT",
    "EVENT_ADD_PAYMENT_INFO", "EVENT_PLACE_ORDER", "EVENT_PURCHASE", "EVENT_COMPLETE_REGISTRATION",
)


@dataclass(frozen=True)
class Source:
    """One way an event reaches the bridge: its kind and where exactly."""

    kind: str
    where: str


_CHECKOUT = "WooCommerce classic and block checkout"
#: The sources besides the webhook topics (those are read from the adapters).
OTHER_SOURCES: Mapping[str, tuple[Source, ...]] = {
    "EVENT_CONTENT_VIEW": (Source(STOREFRONT, "product page"),),
    "EVENT_SEARCH": (Source(STOREFRONT, "search results page"),),
    "EVENT_ADD_TO_CART": (Source(STOREFRONT, "Shopify and Shopline AJAX cart, WooCommerce classic and block "
                                             "add to cart"),),
    "EVENT_INITIATED_CHECKOUT": (Source(CHECKOUT_PIXEL, "Shopify `checkout_started`"),
                                 Source(STOREFRONT, f"{_CHECKOUT} page")),
    "EVENT_ADD_PAYMENT_INFO": (Source(CHECKOUT_PIXEL, "Shopify `payment_info_submitted`"),
                               Source(STOREFRONT, f"{_CHECKOUT}, place order")),
    **{name: (Source(OPT_IN, "a CSS selector clicked or submitted, or a URL pattern visited "
                             "(`event_triggers`)"),) for name in TRIGGERED_EVENTS},
    COMPLETE_TRANSACTION: (Source(WEBHOOK, "WooCommerce order status completed"),),
    **{name: (Source(WEBHOOK, f"a paid order, paid within {days} day{'s' if days > 1 else ''} of its click"),)
       for name, days in DAY_PURCHASES.items()},
}
#: Sent only for a store that adds them to `events` (and, for the triggered ones, lists a trigger).
LATER_EVENTS = frozenset({COMPLETE_TRANSACTION, *DAY_PURCHASES})


def webhook_sources() -> dict[str, tuple[Source, ...]]:
    """Per event, the topics that send it by default, platforms with the same topics named together."""
    topics: dict[str, dict[str, list[str]]] = {}  # event -> platform -> topics
    for platform, adapter in adapters.REGISTRY.items():
        for topic, event in adapter.TOPICS.items():
            topics.setdefault(event, {}).setdefault(platform, []).append(topic)
    found = {}
    for event, by_platform in topics.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        for platform, names in by_platform.items():
            groups.setdefault(tuple(names), []).append(platform)
        found[event] = tuple(
            Source(WEBHOOK, f"{', '.join(map(_title, platforms))} {', '.join(f'`{n}`' for n in names)}")
            for names, platforms in groups.items())
    return found


def sources() -> dict[str, tuple[Source, ...]]:
    """Every one of Kwai's 32 names with its sources ( () for none): the names on by
    default in the funnel's order, then those with a source, then the rest."""
    built = webhook_sources()
    found = {name: built.get(name, ()) + OTHER_SOURCES.get(name, ()) for name in EVENT_NAMES}

    def place(name: str) -> tuple[int, int, str]:
        if name in DEFAULT_EVENTS:
            return 0, DEFAULT_EVENTS.index(name), name
        return (1 if found[name] else 2), 0, name

    return {name: found[name] for name in sorted(found, key=place)}


def webhook_platforms(event: str) -> frozenset[str]:
    """The platforms whose webhooks can send `event`: by a topic, or as a later stage of
    an order (every platform)."""
    if event in LATER_EVENTS:
        return frozenset(adapters.REGISTRY)
    return frozenset(p for p, adapter in adapters.REGISTRY.items() if event in adapter.TOPICS.values())


def switch(name: str, found: tuple[Source, ...]) -> str:
    """How a store switches `name` on or off."""
    if name in DEFAULT_EVENTS:
        return "on; leave it out of `events` to stop it"
    if name in TRIGGERED_EVENTS:
        return "add it to `events` and list its triggers in `event_triggers`"
    if found:
        return "add it to `events`"
    return "nothing produces it; `topic_events` may rename a topic to it"


def _title(platform: str) -> str:
    return {"woocommerce": "WooCommerce"}.get(platform, platform.capitalize())


def markdown() -> str:
    """The README's table of the 32 events."""
    rows = ["| event | on by default | sent from | to switch it |", "|---|---|---|---|"]
    for name, found in sources().items():
        where = "; ".join(f"{s.kind}: {s.where}" for s in found) or "-"
        rows.append(f"| `{name}` | {'on' if name in DEFAULT_EVENTS else 'off'} | {where} | {switch(name, found)} |")
    return "\n".join(rows) + "\n"


__all__ = [
    "CHECKOUT_PIXEL", "DEFAULT_EVENTS", "LATER_EVENTS", "OPT_IN", "OTHER_SOURCES", "STOREFRONT", "Source", "WEBHOOK",
    "markdown", "sources", "switch", "webhook_platforms", "webhook_sources",
]
