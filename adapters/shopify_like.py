"""The order, checkout, cart and customer conversion that Shopify and Shopline share:
their webhooks carry alike payloads under alike topics."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

from adapters import clickid
from adapters.convert import (
    PURCHASE, Line, Priced, cents, choose_value, contact_ids, conversion, event_for, line_fields, total,
)
from adapters.payload import (
    count, header_value, ident, items, load_object, money, obj, required_id, required_time, text, when,
)
from adapters.values import Conversion, ConversionOptions, Notification, PayloadError, WebhookRequest

SIDES = ("presentment_money", "shop_money")


def parse_shopify_like(request: WebhookRequest, *, platform: str, topic_header: str, shop_header: str,
                       id_header: str, privacy_topics: frozenset[str]) -> Notification:
    """Parse a Shopify or Shopline delivery (already verified)."""
    topic = header_value(request, topic_header)
    if topic is None:
        raise PayloadError(f"missing {topic_header} header")
    return Notification(
        platform=platform, topic=topic, shop=header_value(request, shop_header),
        delivery_id=header_value(request, id_header), payload=load_object(request.body),
        kind="privacy" if topic in privacy_topics else "conversion",
    )


def to_conversions(notification: Notification, *, options: ConversionOptions,
                   topics: Mapping[str, str]) -> list[Conversion]:
    """Convert a Shopify or Shopline notification; unknown or ignored topics give []."""
    converter = _CONVERTERS.get(notification.topic)
    if notification.kind != "conversion" or notification.topic not in topics or converter is None:
        return []
    name = event_for(notification.topic, topics[notification.topic], options)
    return converter(notification, name, options) if name else []


def _order(n: Notification, name: str, options: ConversionOptions) -> list[Conversion]:
    p = n.payload
    order_id = required_id(p.get("id"), "order")
    paid = text(p.get("financial_status")) == "paid"
    if n.topic == "orders/create":
        # An instant card payment creates the order already paid; orders/paid may follow
        # and is deduplicated downstream on the same business key.
        names = [name] + ([PURCHASE] if paid and name != PURCHASE else [])
    elif n.topic == "orders/updated":
        names = [name] if paid else []
    else:
        names = [name]
    if not names:
        return []
    subtotal = options.value == "subtotal"
    priced = choose_value(_order_money(p, subtotal), options)
    fields = line_fields(_lines(p.get("line_items"), priced.side), options, priced=priced,
                         order_name=text(p.get("name")))
    click = clickid.find_click(attributes=[p.get("note_attributes"), p.get("attributes")],
                       urls=[p.get("landing_site")], params=options.click_params)
    customer = obj(p.get("customer"))
    ids = {"order_id": order_id, "checkout_token": ident(p.get("checkout_token")),
           "cart_token": ident(p.get("cart_token")), "customer_id": ident(customer.get("id")),
           **_contacts(p)}
    skip = "test order" if p.get("test") is True and not options.test_mode else None
    placed = when(p, ("processed_at", "created_at"))
    paid_at = _payment_time(p) or when(p, ("processed_at", "updated_at", "created_at"))
    return [
        conversion(platform=n.platform, name=event, key=f"order:{order_id}:{event}",
                   moment=required_time(paid_at if event == PURCHASE or n.topic != "orders/create"
                                        else placed, f"order {order_id}"),
                   priced=priced, fields=fields, click=click, identifiers=ids, skip_reason=skip)
        for event in names
    ]


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
