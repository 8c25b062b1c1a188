"""Kwai's 32 events and where each can come from: the platforms' webhook topics (read
from each adapter's TOPICS), the storefront sources still to be built (marked so), and
the names a store sends unless its `events` says otherwise.

`markdown()` is the README's table, so that the manual says what the code does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import adapters
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
    """One way an event reaches the bridge: its kind, where exactly, and whether it is built."""

    kind: str
    where: str
    built: bool = True


def _coming(kind: str, where: str) -> Source:
    return Source(kind, where, built=False)


_PAYMENT_STEPS = "WooCommerce classic and block checkout"
_MERCHANT_TRIGGERS = "CSS selectors or URL patterns the store lists"
_LATER = "a paid order within {} of its click"
#: Sources planned and not built yet.
COMING: Mapping[str, tuple[Source, ...]] = {
    "EVENT_CONTENT_VIEW": (_coming(STOREFRONT, "product page"),),
    "EVENT_SEARCH": (_coming(STOREFRONT, "search results page"),),
    "EVENT_ADD_TO_CART": (_coming(STOREFRONT, "Shopify and Shopline AJAX cart, WooCommerce classic and block "
                                              "add to cart"),),
    "EVENT_INITIATED_CHECKOUT": (_coming(CHECKOUT_PIXEL, "Shopify `checkout_started`"),
                                 _coming(STOREFRONT, _PAYMENT_STEPS)),
    "EVENT_ADD_PAYMENT_INFO": (_coming(CHECKOUT_PIXEL, "Shopify `payment_info_submitted`"),
                               _coming(STOREFRONT, _PAYMENT_STEPS)),
    **{name: (_coming(OPT_IN, _MERCHANT_TRIGGERS),)
       for name in ("EVENT_BUTTON_CLICK", "EVENT_CONTACT", "EVENT_FORM_SUBMIT", "EVENT_SUBSCRIBE")},
    "EVENT_COMPLETE_TRANSACTION": (_coming(WEBHOOK, "Shopify, Shopline `orders/fulfilled`, WooCommerce status "
                                                    "completed (opt-in)"),),
    **{f"EVENT_PURCHASE_{days}_DAY": (_coming(WEBHOOK, _LATER.format(f"{days} day{'s' if days > 1 else ''}")
                                              + " (opt-in)"),)
       for days in (1, 2, 3, 7)},
}


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
    """Every one of Kwai's 32 names with its sources, built first ( () for none): the
    names on by default in the funnel's order, then those with a source, then the rest."""
    built = webhook_sources()
    found = {name: built.get(name, ()) + COMING.get(name, ()) for name in EVENT_NAMES}

    def place(name: str) -> tuple[int, int, str]:
        if name in DEFAULT_EVENTS:
            return 0, DEFAULT_EVENTS.index(name), name
        return (1 if found[name] else 2), 0, name

    return {name: found[name] for name in sorted(found, key=place)}


def webhook_platforms(event: str) -> frozenset[str]:
    """The platforms whose webhooks send `event` by default."""
    return frozenset(p for p, adapter in adapters.REGISTRY.items() if event in adapter.TOPICS.values())


def _title(platform: str) -> str:
    return {"woocommerce": "WooCommerce"}.get(platform, platform.capitalize())


def markdown() -> str:
    """The README's table of the 32 events."""
    rows = ["| event | on by default | sent today from | coming |", "|---|---|---|---|"]
    for name, found in sources().items():
        today = "; ".join(f"{s.kind}: {s.where}" for s in found if s.built) or "-"
        coming = "; ".join(f"{s.kind}: {s.where}" for s in found if not s.built)
        rows.append(f"| `{name}` | {'on' if name in DEFAULT_EVENTS else 'off'} | {today} | {coming} |")
    return "\n".join(rows) + "\n"


__all__ = [
    "CHECKOUT_PIXEL", "COMING", "DEFAULT_EVENTS", "OPT_IN", "STOREFRONT", "Source", "WEBHOOK", "markdown",
    "sources", "webhook_platforms", "webhook_sources",
]
