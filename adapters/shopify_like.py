"""What Shopify and Shopline share: their webhooks carry alike payloads under alike topics,
so one parser and one conversion serve both. `ShopifyLike` holds what tells the two
apart (name, headers, privacy topics); each platform's module builds its public names
from one instance of it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from adapters import clickid
from adapters.later import OrderStage, later_stages
from adapters.convert import (
    PRIVACY_ACTIONS, PURCHASE, Line, Priced, cents, choose_value, contact_ids, conversion, event_for, kind_event,
    line_fields, order_conversions, order_events, total,
)
from adapters.payload import (
    MAX_COUNT, body_key, count, header_value, ident, items, load_object, money, obj, required_id, required_time,
    text, when,
)
from adapters.signing import normalise_shop
from adapters.values import (
    Conversion, ConversionOptions, Notification, PayloadError, ShopMismatchError, TopicMismatchError, WebhookRequest,
)

#: Topic -> default event. Topics with the same default are one kind of conversion, which
#: a store renames as a whole (`adapters.convert.kind_event`).
TOPICS: dict[str, str] = {
    "checkouts/create": "EVENT_INITIATED_CHECKOUT",
    "orders/create": "EVENT_PLACE_ORDER",
    "orders/paid": "EVENT_PURCHASE",
    "orders/updated": "EVENT_PURCHASE",  # only once financial_status is paid
    "carts/create": "EVENT_ADD_TO_CART",
    "carts/update": "EVENT_ADD_TO_CART",
    "customers/create": "EVENT_COMPLETE_REGISTRATION",
    "orders/fulfilled": "EVENT_COMPLETE_TRANSACTION",  # opt-in: in the store's events
}
#: Topics that yield no event of their own but withdraw the order's unsent ones.
WITHDRAW_TOPICS = frozenset({"orders/cancelled"})
#: An order a subscription contract created on its schedule (not the first checkout).
RENEWAL_SOURCE = "subscription_contract"
#: Topics whose events the body alone decides (an order was created; it is paid when
#: its `financial_status` says so), unlike `orders/paid`, whose purchase rests on the
#: topic's word. For an order created paid the platform may send one body byte for byte
#: under orders/create, orders/paid and orders/updated, in any order: the first is
#: stored and the others are duplicates of it, except that one of these still adds the
#: events it yields that are missing (orders/create's EVENT_PLACE_ORDER after an
#: orders/paid), so that no conversion is lost.
BODY_DECIDES_TOPICS = frozenset({"orders/create", "orders/updated"})
SIDES = ("presentment_money", "shop_money")

# -- which body a topic sends --------------------------------------------------------
# The platforms sign the body, not the topic or shop headers: a signed body re-sent under
# another topic must not count as that topic. These keys tell the bodies apart.
#: Only an order has these (a Shopline order has no `order_number`).
ORDER_KEYS = ("financial_status", "order_number", "order_status_url")
#: A checkout has a total or its recovery URL; a cart has neither (Shopline's cart total
#: is `total_amount`).
CHECKOUT_KEYS = ("abandoned_checkout_url", "total_price", "subtotal_price", "sub_total_price")
#: URLs on the shop's own domain (when the shop has no custom one): the body names its shop.
SHOP_URL_KEYS = ("order_status_url", "abandoned_checkout_url")


def _order_body(p: Mapping[str, Any]) -> str | None:
    if not any(key in p for key in ORDER_KEYS):
        return "has none of financial_status, order_number, order_status_url, one of which every order has"
    return None


def _checkout_body(p: Mapping[str, Any]) -> str | None:
    if any(key in p for key in ORDER_KEYS):
        return "is an order (it has financial_status, order_number or order_status_url)"
    if not any(key in p for key in CHECKOUT_KEYS):
        return "has no total and no abandoned_checkout_url, which every checkout has"
    return None


def _cart_body(p: Mapping[str, Any]) -> str | None:
    if any(key in p for key in ORDER_KEYS) or "abandoned_checkout_url" in p:
        return "is an order or a checkout (it has financial_status, order_status_url or abandoned_checkout_url)"
    return None


def _customer_body(p: Mapping[str, Any]) -> str | None:
    if "line_items" in p or "shop_domain" in p or type(p.get("customer")) is dict:
        return "is an order, checkout, cart or privacy request (it has line_items, customer or shop_domain)"
    return None


def _privacy_body(action: str, p: Mapping[str, Any]) -> str | None:
    customer = type(p.get("customer")) is dict
    if action == "redact_shop":
        if customer or any(key in p for key in ("orders_to_redact", "orders_requested", "line_items")):
            return "names a customer or orders, and a shop redaction names the shop alone"
    elif action == "redact_customer":
        if not customer or "orders_to_redact" not in p or "data_request" in p:
            return "is not a customer redaction (customer and orders_to_redact, no data_request)"
    elif not customer or "orders_to_redact" in p or not ("data_request" in p or "orders_requested" in p):
        return "is not a data request (customer and data_request or orders_requested, no orders_to_redact)"
    return None


_BODIES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "orders/create": _order_body, "orders/paid": _order_body, "orders/updated": _order_body,
    "orders/fulfilled": _order_body, "orders/cancelled": _order_body,
    "checkouts/create": _checkout_body, "carts/create": _cart_body, "carts/update": _cart_body,
    "customers/create": _customer_body,
}


def _host(value: Any) -> str | None:
    if type(value) is not str or "://" not in value:
        return None
    try:
        return urlsplit(value.strip()).hostname
    except ValueError:  # not a URL after all
        return None


@dataclass(frozen=True)
class ShopifyLike:
    """One Shopify-like platform: its name, the headers it sends and its privacy topics."""

    name: str
    shop_header: str
    topic_header: str
    delivery_header: str  # stable across the platform's retries
    privacy_topics: frozenset[str]
    domain_suffix: str  # of the shops' own domains: `.myshopify.com`

    def parse(self, request: WebhookRequest) -> Notification:
        """The verified delivery as a Notification; PayloadError unless the body is a JSON
        object, TopicMismatchError unless it is a body the topic sends, ShopMismatchError
        when it names another shop than the shop header."""
        notification = replace(self.peek(request), payload=load_object(request.body))
        self.check_body(notification)
        return notification

    def peek(self, request: WebhookRequest) -> Notification:
        """The delivery as far as its headers tell (its payload empty, its body unread);
        PayloadError when the topic header is missing."""
        topic = header_value(request, self.topic_header)
        if topic is None:
            raise PayloadError(f"missing {self.topic_header} header")
        return Notification(
            platform=self.name, topic=topic, shop=header_value(request, self.shop_header),
            delivery_id=header_value(request, self.delivery_header), payload={},
            kind="privacy" if topic in self.privacy_topics else "conversion",
        )

    def check_body(self, n: Notification) -> None:
        """Raise unless the body is one `n.topic` sends, naming (where it names one) the
        shop of the shop header, which the pipeline has matched to the store."""
        p = n.payload
        if n.kind == "privacy":
            wrong = _privacy_body(PRIVACY_ACTIONS[n.topic], p)
            named = text(p.get("shop_domain"), p.get("store_domain"))
            if wrong is None and named is None:
                wrong = "names no shop (shop_domain)"
            shops = [named]
        else:
            fits = _BODIES.get(n.topic)
            wrong = fits(p) if fits is not None else None
            shops = [host for host in map(_host, (p.get(key) for key in SHOP_URL_KEYS))
                     if host and host.endswith(self.domain_suffix)]
        if wrong is not None:
            raise TopicMismatchError(f"the body is not a {n.topic} body: it {wrong}")
        header = normalise_shop(n.shop)
        for shop in shops:
            shop = normalise_shop(shop)
            # Shopline may name a shop by its handle alone (`acme` for acme.myshopline.com).
            if shop != header and shop + self.domain_suffix != header:
                raise ShopMismatchError(f"the body names another shop than {self.shop_header}")

    def delivery_key(self, request: WebhookRequest, notification: Notification) -> str:
        """The delivery id header (unchanged when resent), else a hash of topic and body."""
        return header_value(request, self.delivery_header) or body_key(notification.topic, request.body)

    def normalise_shop_setting(self, value: str) -> str:
        """The stores file's `shop` as a bare lower-case domain; ValueError says what is wanted."""
        domain = normalise_shop(value)
        if not domain or "/" in domain or " " in domain:
            raise ValueError(f"must be the shop's domain, such as acme.my{self.name}.com")
        return domain


def is_ping(request: WebhookRequest) -> bool:
    """Never: every delivery from this platform is signed."""
    return False


def to_conversions(notification: Notification, *, options: ConversionOptions) -> list[Conversion]:
    """The Kwai events a notification yields for a store with `options` ([] when none)."""
    converter = _CONVERTERS.get(notification.topic)
    if notification.kind != "conversion" or converter is None:
        return []
    if notification.topic in WITHDRAW_TOPICS:
        return converter(notification, "", options)
    if notification.topic not in TOPICS:
        return []
    name = event_for(notification.topic, TOPICS, options)
    return converter(notification, name, options) if name else []


def _order(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    order_id = required_id(p.get("id"), "order")
    created = n.topic == "orders/create"
    status = text(p.get("financial_status"))
    paid = n.topic == "orders/paid" or status == "paid"
    paid_name = kind_event(PURCHASE, TOPICS, options)
    # orders/cancelled withdraws, and an update that finds the money given back; an order
    # still `paid` after its cancellation (the refund to come) stays a purchase until then.
    withdrawn = ("cancelled" if n.topic in WITHDRAW_TOPICS else
                 "refunded" if n.topic == "orders/updated" and status in ("refunded", "voided") else None)
    stage = OrderStage(fulfilled=n.topic == "orders/fulfilled" or text(p.get("fulfillment_status")) == "fulfilled",
                       renewal=text(p.get("source_name")) == RENEWAL_SOURCE, withdrawn=withdrawn,
                       moment=when(p, ("cancelled_at", "updated_at", "processed_at", "created_at")))
    later = partial(later_stages, stage=stage, order_id=order_id, platform=n.platform, paid_name=paid_name,
                    names=[kind_event("EVENT_PLACE_ORDER", TOPICS, options)], options=options)
    if withdrawn:
        return later([])
    # orders/fulfilled repeats the paid order's purchase (one business key: one event)
    # for the completed transaction to follow
    events = order_events(paid_name if n.topic == "orders/fulfilled" else name, paid_name=paid_name,
                          created=created, paid=paid)
    if not events:
        return []
    subtotal = options.value == "subtotal"
    priced = choose_value(_order_money(p, subtotal), options)
    fields = line_fields(_lines(p.get("line_items"), priced.side), options, priced=priced,
                         order_name=text(p.get("name")))
    click = clickid.find_click(attributes=[p.get("note_attributes"), p.get("attributes")],
                               urls=[p.get("landing_site")], params=options.click_params)
    customer = obj(p.get("customer"))
    # `token`, the order's own secret, is its key: a click given by order id binds with it only.
    ids = {"order_id": order_id, "order_key": text(p.get("token")),
           "checkout_token": ident(p.get("checkout_token")), "cart_token": ident(p.get("cart_token")),
           "customer_id": ident(customer.get("id")), **_contacts(p)}
    return later(order_conversions(
        events, platform=n.platform, order_id=order_id, created=created, paid_name=paid_name,
        placed=when(p, ("processed_at", "created_at")),
        paid_at=_payment_time(p) or when(p, ("processed_at", "updated_at", "created_at")),
        priced=priced, fields=fields, click=click, identifiers=ids,
        skip_reason="test order" if p.get("test") is True and not options.test_mode else None,
    ))


def _checkout(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    token = required_id(p.get("token") or p.get("id"), "checkout")
    amount = p.get("subtotal_price", p.get("sub_total_price")) if options.value == "subtotal" else p.get("total_price")
    currency = text(p.get("presentment_currency"), p.get("currency"))
    priced = choose_value([("", money(amount), currency)], options)
    fields = line_fields(_lines(p.get("line_items"), ""), options, priced=priced, order_name=text(p.get("name")))
    click = clickid.find_click(attributes=[p.get("note_attributes"), p.get("attributes")],
                               urls=[p.get("landing_site")], params=options.click_params)
    customer = obj(p.get("customer"))
    ids = {"checkout_token": token, "cart_token": ident(p.get("cart_token")),
           "customer_id": ident(customer.get("id")), **_contacts(p)}
    moment = when(p, ("created_at", "updated_at", "update_at"))
    return [conversion(platform=n.platform, name=name, key=f"checkout:{token}:{name}",
                       moment=required_time(moment, f"checkout {token}"), priced=priced, fields=fields,
                       click=click, identifiers=ids)]


def _cart(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    token = required_id(p.get("token") or p.get("id"), "cart")
    raw = items(p.get("line_items"))
    quantity = sum(count(line.get("quantity")) for line in raw)
    if quantity == 0:
        return []  # an emptied cart adds nothing
    if quantity > MAX_COUNT:
        raise PayloadError(f"cart {token} holds more than {MAX_COUNT} items")
    priced = choose_value(_cart_money(p, raw), options)
    fields = line_fields(_lines(raw, priced.side), options, priced=priced, order_name=None)
    click = clickid.find_click(attributes=[p.get("attributes"), p.get("note_attributes")], params=options.click_params)
    return [conversion(platform=n.platform, name=name, key=f"cart:{token}:{name}:{quantity}",
                       moment=required_time(when(p, ("updated_at", "created_at")), f"cart {token}"),
                       priced=priced, fields=fields, click=click, identifiers={"cart_token": token},
                       high_water=(f"cart:{token}", quantity))]


def _customer(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    customer_id = required_id(p.get("id"), "customer")
    click = clickid.find_click(attributes=[p.get("note_attributes"), p.get("attributes")], params=options.click_params)
    return [conversion(platform=n.platform, name=name, key=f"customer:{customer_id}:{name}",
                       moment=required_time(when(p, ("created_at", "updated_at")), f"customer {customer_id}"),
                       priced=Priced(), fields={}, click=click,
                       identifiers={"customer_id": customer_id, **_contacts(p)})]


_CONVERTERS: dict[str, Callable[[Notification, str, ConversionOptions], list[Conversion]]] = {
    "orders/create": _order, "orders/paid": _order, "orders/updated": _order,
    "orders/fulfilled": _order, "orders/cancelled": _order,
    "checkouts/create": _checkout, "carts/create": _cart, "carts/update": _cart,
    "customers/create": _customer,
}


def _order_money(p: Mapping[str, Any], subtotal: bool) -> list[tuple[str, Decimal | None, Any]]:
    sets = ("subtotal_price_set", "current_subtotal_price_set") if subtotal else ("total_price_set", "current_total_price_set")
    plain = ("subtotal_price", "current_subtotal_price") if subtotal else ("total_price", "current_total_price")
    for key in sets:
        found = [(side, money(obj(obj(p.get(key)).get(side)).get("amount")),
                  obj(obj(p.get(key)).get(side)).get("currency_code")) for side in SIDES]
        if any(amount is not None for _, amount, _ in found):
            return found
    amount = next((money(p.get(key)) for key in plain if money(p.get(key)) is not None), None)
    return [("", amount, p.get("currency"))]


def _cart_money(p: Mapping[str, Any], raw: list[Mapping[str, Any]]) -> list[tuple[str, Decimal | None, Any]]:
    found = []
    for side in SIDES:
        sums = [obj(obj(line.get("line_price_set")).get(side)) for line in raw]
        currencies = {s.get("currency_code") for s in sums}
        if len(currencies) == 1:
            found.append((side, total(money(s.get("amount")) for s in sums), currencies.pop()))
    plain = total(money(line.get("line_price")) if money(line.get("line_price")) is not None
                  else cents(money(line.get("price")), Decimal(count(line.get("quantity")))) for line in raw)
    currency = text(p.get("currency_code"), p.get("currency"), *(line.get("currency_code") for line in raw))
    return found + [("", plain, currency)]


def _lines(raw: Any, side: str) -> list[Line]:
    lines = []
    for line in items(raw):
        price = money(obj(obj(line.get("price_set")).get(side)).get("amount")) if side else None
        lines.append(Line(
            product_id=ident(line.get("product_id")), variant_id=ident(line.get("variant_id")),
            sku=text(line.get("sku")), title=text(line.get("title"), line.get("name")),
            quantity=count(line.get("quantity")), price=price if price is not None else money(line.get("price")),
            # the product's type, where the payload carries it (the storefront's cart does)
            category=text(line.get("product_type")),
        ))
    return lines


def _contacts(p: Mapping[str, Any]) -> dict[str, str]:
    customer = obj(p.get("customer"))
    return contact_ids(text(p.get("email"), p.get("contact_email"), customer.get("email")),
                       [(p.get("phone"), p.get("phone_area_code")), (customer.get("phone"), customer.get("area_code"))])


def _payment_time(p: Mapping[str, Any]) -> datetime | None:
    """When a payment succeeded, where the payload says (Shopline `payment_details`)."""
    times = [when(d, ("processed_at", "create_time")) for d in items(p.get("payment_details"))
             if text(d.get("pay_status")) == "paid"]
    return max((t for t in times if t), default=None)
