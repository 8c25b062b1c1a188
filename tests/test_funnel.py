"""Kwai's 32 events as a table: which are on by default, which platforms' webhooks produce
each (checked by converting real payloads), which other sources produce it (storefront,
checkout pixel, the store's triggers); and the README's table is the code's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import adapters
from adapters import funnel
from adapters.values import ConversionOptions
from kwai_bridge.kwai.events import EVENT_NAMES
from tests.adapter_helpers import delivery
from tests.conftest import fixture_bytes
from tests.serving import SHOPS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SHOPIFY_LIKE = frozenset({"shopify", "shopline"})
ALL = frozenset(adapters.REGISTRY)
NONE: frozenset[str] = frozenset()
PIXEL, SHOP, OPT, HOOK = funnel.CHECKOUT_PIXEL, funnel.STOREFRONT, funnel.OPT_IN, funnel.WEBHOOK

# event: (on by default, platforms whose webhooks send it, kinds of its other sources)
TABLE = {
    "EVENT_CONTENT_VIEW": (True, NONE, {SHOP}),
    "EVENT_SEARCH": (True, NONE, {SHOP}),
    "EVENT_ADD_TO_CART": (True, SHOPIFY_LIKE, {SHOP}),
    "EVENT_INITIATED_CHECKOUT": (True, SHOPIFY_LIKE, {PIXEL, SHOP}),
    "EVENT_ADD_PAYMENT_INFO": (True, NONE, {PIXEL, SHOP}),
    "EVENT_PLACE_ORDER": (True, ALL, set()),
    "EVENT_PURCHASE": (True, ALL, set()),
    "EVENT_COMPLETE_REGISTRATION": (True, ALL, set()),
    "EVENT_BUTTON_CLICK": (False, NONE, {OPT}),
    "EVENT_CONTACT": (False, NONE, {OPT}),
    "EVENT_FORM_SUBMIT": (False, NONE, {OPT}),
    "EVENT_SUBSCRIBE": (False, NONE, {OPT}),
    # the later stages of an order: opt-in, from every platform's order webhooks
    "EVENT_COMPLETE_TRANSACTION": (False, ALL, set()),
    "EVENT_PURCHASE_1_DAY": (False, ALL, set()),
    "EVENT_PURCHASE_2_DAY": (False, ALL, set()),
    "EVENT_PURCHASE_3_DAY": (False, ALL, set()),
    "EVENT_PURCHASE_7_DAY": (False, ALL, set()),
    # nothing of a store's produces these; a store may rename a topic to one (topic_events)
    **{name: (False, NONE, set()) for name in (
        "EVENT_DOWNLOAD", "EVENT_ADD_TO_WISHLIST", "EVENT_FIRST_DEPOSIT", "EVENT_CREDIT_APPROVAL",
        "EVENT_LOAN_APPLICATION", "EVENT_LOAN_CREDIT", "EVENT_LOAN_DISBURSAL", "EVENT_CREDIT_CARD_APPLICATION",
        "EVENT_VALUE_PRODUCE", "EVENT_KEY_INAPP_EVENT", "EVENT_KEY_INAPP_EVENT_1", "EVENT_KEY_INAPP_EVENT_2",
        "EVENT_KEY_INAPP_EVENT_3", "EVENT_AD_VIEW", "EVENT_AD_CLICK")},
}


def test_the_table_covers_kwais_32_names():
    assert set(TABLE) == set(EVENT_NAMES) and len(TABLE) == 32
    assert list(funnel.sources()) == [*funnel.DEFAULT_EVENTS, *[n for n in funnel.sources()
                                                                 if n not in funnel.DEFAULT_EVENTS]]


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_event_has_the_sources_the_table_says(name):
    on, platforms, others = TABLE[name]
    found = funnel.sources()[name]
    assert (name in funnel.DEFAULT_EVENTS) is on
    assert funnel.webhook_platforms(name) == platforms
    assert {s.kind for s in found} == ({HOOK} if platforms else set()) | others


# -- what the webhooks really produce --------------------------------------------------------
def _order(platform: str, **changes) -> dict:
    path = {"shopify": "shopify/shopify_orders_create.json",
            "shopline": "shopline/shopline_orders_create.DERIVED_FROM_SDK.json",
            "woocommerce": "woocommerce/woocommerce_order_created.json"}[platform]
    order = json.loads(fixture_bytes(path, shop=SHOPS[platform]))
    return {**order, **changes} if platform == "woocommerce" else {**order, "financial_status": "paid", "test": False,
                                                                   **changes}


def _bodies(platform: str) -> dict[str, dict]:
    """A body for each topic the platform's adapter converts."""
    if platform == "woocommerce":
        customer = {"id": 9, "email": "ann@example.com", "date_created_gmt": "2026-11-26T12:00:00"}
        return {"order.created": _order(platform), "order.updated": _order(platform, status="completed"),
                "customer.created": customer}
    cart = json.loads(fixture_bytes("shopify/shopify_carts_create.json", shop=SHOPS[platform]))
    checkout = json.loads(fixture_bytes("shopify/shopify_checkouts_create.json", shop=SHOPS["shopify"]))
    checkout.pop("abandoned_checkout_url", None)  # it names the Shopify sample's shop
    customer = {"id": 9, "email": "ann@example.com", "created_at": "2026-11-26T12:00:00Z"}
    return {"orders/create": _order(platform), "orders/paid": _order(platform), "orders/updated": _order(platform),
            "orders/fulfilled": _order(platform, fulfillment_status="fulfilled"),
            "checkouts/create": checkout, "carts/create": cart, "carts/update": cart, "customers/create": customer}


@pytest.mark.parametrize("platform", sorted(ALL))
def test_a_platforms_webhooks_produce_exactly_the_events_the_table_gives_it(platform):
    deliver = delivery(adapters.REGISTRY[platform], shop=SHOPS[platform], secret="s")
    bodies = _bodies(platform)
    assert set(bodies) == set(adapters.REGISTRY[platform].TOPICS)
    every = ConversionOptions(events=EVENT_NAMES)  # the later stages are produced only when chosen
    produced = {c.event.event_name for topic, body in bodies.items() for c in deliver(topic, body, every)[1]}
    assert produced == {name for name, (_, platforms, _) in TABLE.items() if platform in platforms}


# -- the manual ------------------------------------------------------------------------------
def test_the_readme_table_is_the_codes():
    start = README.index("<!-- events-table -->") + len("<!-- events-table -->")
    end = README.index("<!-- /events-table -->")
    assert README[start:end].strip() == funnel.markdown().strip(), \
        "README events table is stale: regenerate it from adapters.funnel.markdown()"
