"""WooCommerce (core) webhooks: verify, parse and convert (pure; no I/O, no clock).

WooCommerce has no paid, cart or checkout topics: a purchase is an order whose payment
date is set and whose status is processing or completed (a COD order sits in
processing with no payment date, so status alone is not enough).
"""
from __future__ import annotations

import html
import re
from dataclasses import replace
from functools import partial
from typing import Any, Mapping
from urllib.parse import urlsplit

from adapters import clickid, convert, payload
from adapters.convert import Line
from adapters.later import OrderStage, later_stages
# a public name all the same: WooCommerce core sends no privacy topics, so it finds none
from adapters.convert import privacy_request
from adapters.payload import ident, items, obj, text
from adapters.signing import HmacSignature
from adapters.values import (
    Conversion, ConversionOptions, Notification, PayloadError, TopicMismatchError, WebhookRequest,
)

NAME = "woocommerce"
SHOP_HEADER = "x-wc-webhook-source"
TOPIC_HEADER = "x-wc-webhook-topic"
DELIVERY_HEADER = "x-wc-webhook-delivery-id"  # new on every attempt: for logs, not dedupe

TOPICS: dict[str, str] = {
    "order.created": "EVENT_PLACE_ORDER",  # plus the paid order's event when created paid
    "order.updated": "EVENT_PURCHASE",  # only once the order is paid
    "customer.created": "EVENT_COMPLETE_REGISTRATION",
}
#: Topics whose events the body alone decides (paid is read from the order's status and
#: payment date): WooCommerce may send one order's body byte for byte as order.created and
#: order.updated (both fire when an order is created, and each delivery is built later
#: from the order as it then is). The first is stored; the second is a duplicate of it
#: that still adds the events it yields that are missing.
BODY_DECIDES_TOPICS = frozenset({"order.created", "order.updated"})
KEPT_HEADERS = ("x-wc-webhook-topic", "x-wc-webhook-source", "x-wc-webhook-resource", "x-wc-webhook-event",
                "x-wc-webhook-id")
#: Each store has its own webhook secret: the signature alone names the store.
APP_WIDE_SECRET = False
#: Order ids are a small counter anybody can guess: a click binds one only with its order key.
PIXEL_SANDBOX = False

PAID_STATUSES = frozenset({"processing", "completed"})
#: Statuses that withdraw the order's unsent events (adapters.later).
WITHDRAWN_STATUSES = {"cancelled": "cancelled", "refunded": "refunded"}
#: WooCommerce Subscriptions marks a renewal order with this meta (the subscription's id).
RENEWAL_META = "_subscription_renewal"
#: Block-checkout drafts still arrive through order.updated (woocommerce#66995).
DRAFT_STATUSES = frozenset({"checkout-draft", "draft", "auto-draft"})
SESSION_ENTRY_META = "_wc_order_attribution_session_entry"
_PING = re.compile(rb"webhook_id=\d+")

# https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks (WC_Webhook::generate_signature)
SIGNATURE = HmacSignature("X-WC-Webhook-Signature", encodings=("base64",))
verify = SIGNATURE.verify


# https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks (WC_Webhook::deliver, deliver_ping)
def parse(request: WebhookRequest) -> Notification:
    """The delivery as a Notification (`kind` "ping" for the unsigned creation ping)."""
    notification = peek(request)
    if notification.kind == "ping":
        return notification
    notification = replace(notification, payload=payload.load_object(request.body))
    topic = notification.topic
    fits = _BODIES.get(topic)
    wrong = fits(notification.payload) if fits is not None else None
    if wrong is not None:
        raise TopicMismatchError(f"the body is not a {topic} body: it {wrong}")
    return notification


def peek(request: WebhookRequest) -> Notification:
    """The delivery as far as its headers tell (its payload empty, its body unread; the
    ping whole, it is a few bytes); PayloadError when the topic header is missing."""
    if is_ping(request):
        webhook_id = request.body.strip().split(b"=", 1)[1].decode("ascii")
        return Notification(platform=NAME, topic="ping", shop=None, delivery_id=None,
                            payload={"webhook_id": webhook_id}, kind="ping")
    topic = payload.header_value(request, TOPIC_HEADER)
    if topic is None:
        raise PayloadError("missing X-WC-Webhook-Topic header")
    return Notification(platform=NAME, topic=topic, shop=payload.header_value(request, SHOP_HEADER),
                        delivery_id=payload.header_value(request, DELIVERY_HEADER), payload={})


# The signature covers the body, not the topic header: a signed body re-sent under
# another topic must not count as that topic.
def _order_body(p: Mapping[str, Any]) -> str | None:
    if "order_key" not in p and "line_items" not in p:
        return "has no order_key and no line_items, which every order has"
    return None


def _customer_body(p: Mapping[str, Any]) -> str | None:
    if "order_key" in p or "line_items" in p:
        return "is an order (it has order_key or line_items)"
    return None


_BODIES = {"order.created": _order_body, "order.updated": _order_body, "customer.created": _customer_body}


def is_ping(request: WebhookRequest) -> bool:
    """The form-encoded `webhook_id=N` ping sent on creation, unsigned and without topic."""
    if request.header(SIGNATURE.name) or request.header(TOPIC_HEADER):
        return False
    return _PING.fullmatch(request.body.strip()) is not None


def delivery_key(request: WebhookRequest, notification: Notification) -> str:
    """A hash of topic and body: WooCommerce's delivery id changes on every attempt."""
    return payload.body_key(notification.topic, request.body)


def normalise_shop_setting(value: str) -> str:
    """The stores file's `shop` as the site URL; ValueError says what is wanted."""
    url = value.lower().rstrip("/")
    url = url if "://" in url else "https://" + url
    if not urlsplit(url).netloc or " " in url:
        raise ValueError("must be the site URL, such as https://shop.example.com")
    return url


def to_conversions(notification: Notification, *, options: ConversionOptions) -> list[Conversion]:
    """The Kwai events a notification yields for a store with `options` ([] when none)."""
    if notification.kind != "conversion" or notification.topic not in TOPICS:
        return []
    name = convert.event_for(notification.topic, TOPICS, options)
    if name is None:
        return []
    if notification.topic == "customer.created":
        return [_customer(notification, name)]
    return _order(notification, name, options)


def _order(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    status = text(p.get("status"))
    if status in DRAFT_STATUSES:
        return []  # not an order yet: the shopper merely opened the block checkout
    order_id = payload.required_id(p.get("id"), "order")
    created = n.topic == "order.created"
    paid = status in PAID_STATUSES and text(p.get("date_paid_gmt"), p.get("date_paid")) is not None
    paid_name = convert.kind_event(convert.PURCHASE, TOPICS, options)
    stage = OrderStage(fulfilled=status == "completed", renewal=_meta(p.get("meta_data"), RENEWAL_META) is not None,
                       # a new order is never anything but placed: a later change withdraws
                       withdrawn=None if created else WITHDRAWN_STATUSES.get(status or ""),
                       moment=payload.when(p, ("date_modified_gmt", "date_created_gmt"), naive_is_utc=True))
    later = partial(later_stages, stage=stage, order_id=order_id, platform=NAME, paid_name=paid_name,
                    names=[convert.kind_event("EVENT_PLACE_ORDER", TOPICS, options)], options=options)
    if stage.withdrawn:
        return later([])
    events = convert.order_events(name, paid_name=paid_name, created=created, paid=paid)
    if not events:
        return []
    raw = items(p.get("line_items"))
    if options.value == "subtotal":
        amount = convert.total(payload.money(line.get("subtotal")) for line in raw)
    else:
        amount = payload.money(p.get("total"))
    priced = convert.choose_value([("", amount, p.get("currency"))], options)
    number = text(p.get("number")) or ident(p.get("number")) or order_id
    fields = convert.line_fields(_lines(raw), options, priced=priced, order_name=f"#{number}")
    click, click_note = _click(p.get("meta_data"), options)
    billing = obj(p.get("billing"))
    ids = {"order_id": order_id, "order_key": text(p.get("order_key")), "customer_id": ident(p.get("customer_id")),
           **convert.contact_ids(billing.get("email"), [(billing.get("phone"), None)])}
    # the *_gmt fields are UTC written without an offset; the others are site-local
    return later(convert.order_conversions(
        events, platform=NAME, order_id=order_id, created=created, paid_name=paid_name,
        placed=payload.when(p, ("date_created_gmt",), naive_is_utc=True),
        paid_at=payload.when(p, ("date_paid_gmt", "date_modified_gmt", "date_created_gmt"), naive_is_utc=True),
        priced=priced, fields=fields, click=click, identifiers=ids, click_note=click_note,
    ))


def _click(meta: Any, options: ConversionOptions) -> tuple[tuple[str | None, str | None], str | None]:
    """The order's click id and its source, and why a landing URL's was not used.

    WordPress keeps the session entry with every `%xx` removed: a click id read from it
    is used only when it cannot have lost characters. Otherwise the event waits, without
    a click id, for stronger evidence (the snippet's or the plugin's click, bound within
    the store's late-binding window); a wrong click id is worse than none.
    """
    entry = _meta(meta, SESSION_ENTRY_META)
    found = clickid.find_click(meta=meta, urls=[entry], params=options.click_params)
    if found[1] != "landing_url" or found[0] is None or entry is None:
        return found, None
    doubt = clickid.stripped_click_doubt(found[0], entry)
    if doubt is None:
        return found, None
    return (None, None), f"the click id in {SESSION_ENTRY_META} was not used: {doubt}"


def _customer(n: Notification, name: str) -> Conversion:
    p = n.payload
    customer_id = payload.required_id(p.get("id"), "customer")
    billing = obj(p.get("billing"))
    moment = payload.when(p, ("date_created_gmt", "date_modified_gmt"), naive_is_utc=True)
    return convert.conversion(
        platform=NAME, name=name, key=f"customer:{customer_id}:{name}",
        moment=payload.required_time(moment, f"customer {customer_id}"), priced=convert.Priced(),
        fields={}, click=(None, None),
        identifiers={"customer_id": customer_id,
                     **convert.contact_ids(text(p.get("email"), billing.get("email")),
                                          [(billing.get("phone"), None)])},
    )


def _lines(raw: list[Mapping[str, Any]]) -> list[Line]:
    return [
        Line(product_id=ident(line.get("product_id")), variant_id=ident(line.get("variation_id")),
             sku=text(line.get("sku")), title=_unescape(text(line.get("name"))),
             quantity=payload.count(line.get("quantity")), price=payload.money(line.get("price")))
        for line in raw
    ]


def _meta(meta: Any, key: str) -> str | None:
    """The last value stored under `key` in WooCommerce `meta_data`."""
    values = [text(m.get("value")) for m in items(meta) if m.get("key") == key]
    return next((v for v in reversed(values) if v), None)


def _unescape(name: str | None) -> str | None:
    # names arrive HTML-escaped (`Ship Your Idea &ndash; Color: Black`)
    return html.unescape(name) if name else None
