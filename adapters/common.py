"""Shared conversion pieces: reading payload values, choosing value and currency, building
Kwai events and privacy requests (the Shopify and Shopline conversions live in
`adapters.shopify_like`).

Payload values are read defensively: a field of the wrong type counts as absent, so a
strange payload gives fewer details or a PayloadError, never a TypeError.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Mapping, Sequence

import orjson

from adapters.base import (
    Conversion, ConversionOptions, Notification, PayloadError, WebhookRequest, sha256_email, sha256_phone,
)
from kwai_bridge.kwai.events import CURRENCIES, Content, KwaiEvent

PURCHASE = "EVENT_PURCHASE"
CENT = Decimal("0.01")
SIDES = ("presentment_money", "shop_money")


# -- reading the request -----------------------------------------------------------------
def load_object(body: bytes) -> dict[str, Any]:
    """Parse `body` as a JSON object or raise PayloadError.

    orjson parses a webhook's body in less than half the time of the standard library.
    What it refuses (a lone surrogate, a number beyond a double, a byte order mark) goes
    to the standard library, so that no signed body the platforms send is turned away;
    NaN and Infinity stay refused. Integers beyond 64 bits are read as floats by orjson;
    the platforms' ids are 64-bit.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PayloadError(f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body is a JSON {type(data).__name__}, not an object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def header_value(request: WebhookRequest, name: str) -> str | None:
    value = request.header(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def body_key(topic: str, body: bytes) -> str:
    """The delivery key when the platform gives no stable delivery id."""
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\n" + body).hexdigest()


# -- reading payload values ----------------------------------------------------------
# `type(v) is dict` first: JSON gives dicts, and the check against the Mapping ABC costs
# several times more on the webhook path, where these run dozens of times per request.
def obj(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def items(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value if type(v) is dict or isinstance(v, Mapping)]


def text(*values: Any) -> str | None:
    """The first non-blank string among `values`, stripped."""
    for value in values:
        if isinstance(value, str):
            value = value.strip()
            if value:
                return value
    return None


def ident(value: Any) -> str | None:
    """An id as an exact string (Shopify ids pass 2^53); 0 and blanks mean absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value else None
    found = text(value)
    return None if found in (None, "0") else found


def count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    return max(value, 0) if isinstance(value, int) else 0


def money(value: Any) -> Decimal | None:
    """A Decimal from a string or number (via str, never float arithmetic); blank = None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


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


def when(payload: Mapping[str, Any], keys: Sequence[str], *, naive_is_utc: bool = False) -> datetime | None:
    """The first of `keys` that holds an ISO 8601 time, as aware UTC."""
    for key in keys:
        raw = text(payload.get(key))
        if raw is None:
            continue
        try:
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                if not naive_is_utc:
                    continue  # a local time without offset cannot be placed
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            continue
    return None


def required_time(moment: datetime | None, what: str) -> datetime:
    if moment is None:
        raise PayloadError(f"{what} carries no usable time")
    return moment


def required_id(value: Any, what: str) -> str:
    found = ident(value)
    if found is None:
        raise PayloadError(f"{what} has no id")
    return found


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
    usable = [(side, amount, cur.strip().upper()) for side, amount, cur in candidates
              if amount is not None and isinstance(cur, str) and cur.strip()]
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
    """One order, checkout or cart line, normalised; `price` is the unit price."""

    product_id: str | None
    variant_id: str | None
    sku: str | None
    title: str | None
    quantity: int
    price: Decimal | None


def line_fields(lines: Sequence[Line], options: ConversionOptions, *, priced: Priced,
                order_name: str | None) -> dict[str, Any]:
    """Kwai's content fields for `lines` (content ids per `options.content_id`)."""
    contents, titles = [], {}
    for line in lines:
        if options.content_id == "variant":
            cid = line.variant_id or line.product_id
        elif options.content_id == "sku":
            cid = line.sku or line.product_id
        else:
            cid = line.product_id
        if cid is None:
            continue  # a line without an id (custom item, removed product) cannot be a content
        contents.append(Content(id=cid, quantity=line.quantity, price=cents(line.price, priced.rate)))
        titles.setdefault(cid, line.title)
    if not lines:
        return {}
    single = next(iter(titles)) if len(titles) == 1 else None
    return {
        "contents": tuple(contents),
        "content_type": "product" if contents else None,
        "content_id": single,
        "content_name": (titles[single] if single else None) or order_name,
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


def event_for(topic: str, default: str, options: ConversionOptions) -> str | None:
    """The Kwai event a topic yields for this store; None when the store ignores it."""
    return options.topic_events.get(topic, default) or None


def conversion(*, platform: str, name: str, key: str, moment: datetime, priced: Priced,
               fields: Mapping[str, Any], click: tuple[str | None, str | None],
               identifiers: Mapping[str, str | None], skip_reason: str | None = None,
               high_water: tuple[str, int] | None = None) -> Conversion:
    event = KwaiEvent(
        event_name=name, event_time=moment, third_party=platform, idempotency_key=key,
        click_id=click[0], value=priced.value, currency=priced.currency, **fields,
    )
    return Conversion(
        event=event, click_source=click[1], skip_reason=skip_reason,
        identifiers={k: v for k, v in identifiers.items() if v}, high_water=high_water,
        value_note=priced.note,
    )


# -- privacy -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PrivacyRequest:
    """What a privacy topic asks of us, with the shopper identified by id and hashes only."""

    action: str  # "redact_customer" | "redact_shop" | "data_request"
    customer_id: str | None = None
    email_sha256: str | None = None
    phone_sha256: str | None = None
    order_ids: tuple[str, ...] = ()


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
