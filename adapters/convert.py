"""The steps every conversion shares: choosing the value and currency Kwai accepts,
content fields from order lines, hashed contact identifiers, which events an order
yields, the Conversion itself, and the privacy request a privacy topic carries."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Sequence

from adapters.payload import MAX_ID_LENGTH, ident, obj, required_time, text
from adapters.signing import sha256_email, sha256_phone
from adapters.values import Conversion, ConversionOptions, Notification, PrivacyRequest
from kwai_bridge.kwai.events import CURRENCIES, Content, KwaiEvent

PURCHASE = "EVENT_PURCHASE"
CENT = Decimal("0.01")


# -- amounts ---------------------------------------------------------------------------
def cents(amount: Decimal | None, rate: Decimal | None = Decimal(1)) -> Decimal | None:
    """`amount * rate` quantised to 2 places, half up; None if it cannot be."""
    if amount is None or rate is None:
        return None
    try:
        return (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)
    except ArithmeticError:
        return None


def total(amounts: Iterable[Decimal | None]) -> Decimal | None:
    """The sum, or None when any amount is missing or there is none."""
    found = list(amounts)
    if not found or any(a is None for a in found):
        return None
    try:
        return sum(found, Decimal(0))  # type: ignore[arg-type]
    except ArithmeticError:
        return None


# -- value and currency -----------------------------------------------------------------
@dataclass(frozen=True)
class Priced:
    """The value chosen for an event; `rate` converts line prices the same way (None: no value)."""

    value: Decimal | None = None
    currency: str | None = None
    side: str = ""
    rate: Decimal | None = None
    note: str | None = None


def choose_value(candidates: Iterable[tuple[str, Decimal | None, Any]], options: ConversionOptions) -> Priced:
    """Pick the first candidate `(side, amount, currency)` Kwai accepts, else convert one.

    Candidates come in order of preference (the shopper's money, then the shop's).
    """
    usable = [(side, amount, cur.upper()) for side, amount, cur in
              ((side, amount, text(cur)) for side, amount, cur in candidates) if amount is not None and cur]
    if not usable:
        return Priced(note="the payload holds no amount with a currency")
    for side, amount, cur in usable:
        if cur in CURRENCIES and cents(amount) is not None:
            return Priced(cents(amount), cur, side, Decimal(1))
    target = options.report_currency
    if target in CURRENCIES:
        for side, amount, cur in usable:
            rate = options.currency_rates.get(cur)
            if rate is not None and cents(amount, rate) is not None:
                return Priced(cents(amount, rate), target, side, rate)
    seen = ", ".join(sorted({cur for _, _, cur in usable}))
    return Priced(note=f"currency {seen} is not one Kwai accepts and no rate converts it"
                       f"{' to ' + target if target else ''}")


# -- lines -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One order, checkout or cart line, normalised; `price` is the unit price and
    `category` the product's type or category, where the payload names one."""

    product_id: str | None
    variant_id: str | None
    sku: str | None
    title: str | None
    quantity: int
    price: Decimal | None
    category: str | None = None


def line_fields(lines: Sequence[Line], options: ConversionOptions, *, priced: Priced,
                order_name: str | None) -> dict[str, Any]:
    """Kwai's content fields for `lines`: content ids per `options.content_id`, or the
    product (the group of its variants) when the store's catalog is by product group."""
    contents, titles, categories = [], {}, set()
    grouped = options.content_type == "product_group"
    for line in lines:
        if options.content_id == "variant" and not grouped:
            cid = line.variant_id or line.product_id
        elif options.content_id == "sku" and not grouped:
            cid = line.sku or line.product_id
        else:
            cid = line.product_id
        if cid is None:
            continue  # a line without an id (custom item, removed product) cannot be a content
        contents.append(Content(id=cid, quantity=line.quantity, price=cents(line.price, priced.rate)))
        titles.setdefault(cid, line.title)
        categories.add(line.category)
    if not lines:
        return {}
    single = next(iter(titles)) if len(titles) == 1 else None
    return {
        "contents": tuple(contents),
        "content_type": options.content_type if contents else None,
        "content_id": single,
        "content_name": (titles[single] if single else None) or order_name,
        # one category for the event only when every content has the same one
        "content_category": categories.pop() if len(categories) == 1 else None,
        "quantity": sum(line.quantity for line in lines),
    }


# -- identifiers and the event ------------------------------------------------------
def contact_ids(email: Any, phones: Iterable[tuple[Any, Any]]) -> dict[str, str]:
    """Hashed email and phone (the clear values never leave this function)."""
    found = {"email_sha256": sha256_email(text(email))}
    for phone, country_code in phones:
        hashed = sha256_phone(text(phone), country_code=text(country_code))
        if hashed:
            found["phone_sha256"] = hashed
            break
    return {k: v for k, v in found.items() if v}


def event_for(topic: str, topics: Mapping[str, str], options: ConversionOptions) -> str | None:
    """The Kwai event `topic` (one of `topics`, topic -> default event) yields for this
    store: None when the store ignores the topic (`""` in topic_events), else the name
    the store gives the topic's kind (`kind_event`)."""
    if options.topic_events.get(topic) == "":
        return None
    return kind_event(topics[topic], topics, options)


def kind_event(default: str, topics: Mapping[str, str], options: ConversionOptions) -> str:
    """The name of the conversions whose default event is `default` (one kind: a paid
    order, a cart add): the store's rename of any topic of that kind (the stores file makes
    the renames agree), else `default`. So renaming orders/paid also renames the purchase
    that orders/updated, or the creation of an order created paid, yields: one name, one
    business key, one event per order."""
    for topic, event in topics.items():
        if event == default and options.topic_events.get(topic):
            return options.topic_events[topic]
    return default


def order_events(name: str, *, paid_name: str, created: bool, paid: bool) -> list[str]:
    """The events an order notification yields: `name`, on creation always and later only
    once the order is paid; an order created already paid (an instant card payment) also
    yields the paid order's event `paid_name`, which a paid topic that may follow repeats
    under the same business key, so that it is deduplicated downstream."""
    if created:
        return [name, paid_name] if paid and name != paid_name else [name]
    return [name] if paid else []


def order_conversions(events: Sequence[str], *, platform: str, order_id: str, created: bool, paid_name: str,
                      placed: datetime | None, paid_at: datetime | None, priced: Priced,
                      fields: Mapping[str, Any], click: tuple[str | None, str | None],
                      identifiers: Mapping[str, str | None], skip_reason: str | None = None,
                      click_note: str | None = None) -> list[Conversion]:
    """One conversion per event of an order, keyed `order:<id>:<event>`: the paid order's
    event `paid_name`, and whatever a topic after creation yields, happen at payment; the
    rest when the order was placed. PayloadError when the time an event needs is missing."""
    return [
        conversion(platform=platform, name=event, key=f"order:{order_id}:{event}",
                   moment=required_time(paid_at if event == paid_name or not created else placed,
                                        f"order {order_id}"),
                   priced=priced, fields=fields, click=click, identifiers=identifiers,
                   skip_reason=skip_reason, click_note=click_note)
        for event in events
    ]


def conversion(*, platform: str, name: str, key: str, moment: datetime, priced: Priced,
               fields: Mapping[str, Any], click: tuple[str | None, str | None],
               identifiers: Mapping[str, str | None], skip_reason: str | None = None,
               high_water: tuple[str, int] | None = None, click_note: str | None = None) -> Conversion:
    event = KwaiEvent(
        event_name=name, event_time=moment, third_party=platform, idempotency_key=key,
        click_id=click[0], value=priced.value, currency=priced.currency, **fields,
    )
    return Conversion(
        event=event, click_source=click[1], skip_reason=skip_reason,
        # an identifier longer than any id is no identifier (and could not be indexed)
        identifiers={k: v for k, v in identifiers.items() if v and len(v) <= MAX_ID_LENGTH}, high_water=high_water,
        value_note=priced.note, click_note=click_note,
    )


def store_choices(conversions: Iterable[Conversion], options: ConversionOptions) -> list[Conversion]:
    """What the store chose, the same for every platform: only the event names it sends
    (`options.events`), each with the identifier it sends as `mapping_id`, if any."""
    chosen = []
    for found in conversions:
        if options.events is not None and found.event.event_name not in options.events:
            continue
        mapping = found.identifiers.get(options.mapping_id) if options.mapping_id else None
        if mapping:
            found = replace(found, event=replace(found.event, mapping_id=mapping))
        chosen.append(found)
    return chosen


# -- privacy -----------------------------------------------------------------------------
PRIVACY_ACTIONS = {
    "customers/data_request": "data_request",
    "customers/redact": "redact_customer",
    "shop/redact": "redact_shop",
    "merchants/redact": "redact_shop",
}


def privacy_request(notification: Notification) -> PrivacyRequest | None:
    """The privacy request a notification carries, or None for any other notification."""
    action = PRIVACY_ACTIONS.get(notification.topic)
    if notification.kind != "privacy" or action is None:
        return None
    payload = notification.payload
    customer = obj(payload.get("customer"))
    hashes = contact_ids(customer.get("email"), [(customer.get("phone"), customer.get("area_code"))])
    orders = payload.get("orders_to_redact") or payload.get("orders_requested")
    order_ids = tuple(o for o in (ident(v) for v in (orders if isinstance(orders, list) else [])) if o)
    return PrivacyRequest(
        action=action, customer_id=ident(customer.get("id")), email_sha256=hashes.get("email_sha256"),
        phone_sha256=hashes.get("phone_sha256"), order_ids=order_ids,
    )
