"""The rules of `POST /events/<store_id>`: what a storefront event body may hold, who may
post which event, its limits, and the store's triggers as the snippet reads them. The
route is kwai_bridge.web.storefront; the conversion is adapters.storefront.

Who may post is decided as for clicks (kwai_bridge.clicks.caller): a browser on one of
the store's origins, the store's own servers with a click token, or Shopify's sandboxed
checkout pixel (`Origin: null`), which may report the checkout steps of a checkout
token only. Nothing is stored without a click id: the body requires one. Consent is the
browser's to ask (the snippet and the pixel send nothing in `consent_mode` without it).

Limits, counted in the database like the clicks': requests a minute per client address
(`clicks_per_address`, an IPv6 /64) and per store (`clicks_per_minute`), under counters
of their own, so that a page's events do not eat the clicks' allowance.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Mapping

from marshmallow import ValidationError
from sqlalchemy.engine import Engine

from adapters.payload import load_object
from adapters.storefront import ADD_PAYMENT_INFO, EVENTS, INITIATED_CHECKOUT, TRIGGERED_EVENTS, BrowserEvent, triggers
from kwai_bridge.clicks import Caller, Refused, address_key
from kwai_bridge.config import StoreConfig
from kwai_bridge.ratelimit import FixedWindows, Limit

log = logging.getLogger(__name__)

#: The largest event body accepted; a real one is a few hundred bytes.
EVENT_BODY_LIMIT = 4096
#: The counters of event requests (`rate_windows.scope`).
ADDRESS_SCOPE = "events:address"
STORE_SCOPE = "events:store"

_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_DECIMAL = re.compile(r"\d{1,10}(\.\d{1,6})?")


def _text(limit: int, pattern: re.Pattern[str] | None = None, what: str = "") -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        value = value.strip()
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise ValueError(what)
        return value
    return parse


def _amount(value: Any) -> Decimal:
    text = value if isinstance(value, str) else (str(value) if type(value) in (int, float) else "")
    if not _DECIMAL.fullmatch(text.strip()):
        raise ValueError('must be an amount such as "19.90"')
    return Decimal(text.strip())


def _count(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= 100_000:
        raise ValueError("must be a whole number from 1 to 100000")
    return value


def _event(value: Any) -> str:
    if value not in EVENTS:
        raise ValueError("must be one of " + ", ".join(EVENTS))
    return value


_TOKEN = _text(512, _PRINTABLE, "must be printable ASCII")
_ID = _text(128, _PRINTABLE, "must be printable ASCII")
#: The fields of `POST /events/<store_id>` and how each is read; any other is refused.
FIELDS: Mapping[str, Callable[[Any], Any]] = {
    "event": _event,
    "event_id": _text(64, _EVENT_ID, "must be 8 to 64 letters, digits, _ . : or -"),
    "click_id": _TOKEN,
    "product_id": _ID, "variant_id": _ID, "sku": _ID,
    "content_name": _text(256), "content_category": _text(256), "query": _text(256),
    "price": _amount, "value": _amount, "quantity": _count, "item_count": _count,
    "currency": _text(3, _CURRENCY, "must be a 3-letter currency code"),
    "cart_token": _TOKEN, "checkout_token": _TOKEN,
}
REQUIRED = ("event", "event_id", "click_id")


def parse_event(body: bytes) -> BrowserEvent:
    """The event a body reports; PayloadError (not a JSON object) or ValidationError
    naming each wrong field."""
    data = load_object(body)
    errors: dict[str, list[str]] = {name: ["Unknown field."] for name in data if name not in FIELDS}
    errors.update({name: ["Missing data for required field."] for name in REQUIRED if name not in data})
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in FIELDS and name not in errors:
            try:
                values[name] = FIELDS[name](value)
            except ValueError as exc:
                errors[name] = [str(exc)]
    if values.get("item_count") and not values.get("cart_token"):
        errors.setdefault("item_count", ["item_count goes with cart_token"])
    if values.get("event") == "EVENT_SEARCH" and not values.get("query") and "query" not in errors:
        errors["query"] = ["a search needs its query"]
    if errors:
        raise ValidationError(errors)
    if values.get("cart_token"):
        # Shopify's Ajax cart answers `<token>?key=<key>`; its webhooks name the token alone.
        values["cart_token"] = values["cart_token"].split("?", 1)[0] or None
    if values.get("currency"):
        values["currency"] = values["currency"].upper()
    return BrowserEvent(**{k: v for k, v in values.items() if v is not None})


#: What the checkout pixel's sandbox may report: it can be framed by any site.
SANDBOX_EVENTS = frozenset({INITIATED_CHECKOUT, ADD_PAYMENT_INFO})


def check_caller(who: Caller, event: BrowserEvent) -> None:
    """Refused (403) when a sandboxed frame reports anything but a checkout step of a
    checkout token."""
    if who is Caller.SANDBOX and (event.event not in SANDBOX_EVENTS or not event.checkout_token):
        raise Refused(403, "from a sandboxed frame, report a checkout step with its checkout_token only")


def check_trigger(store: StoreConfig, event: BrowserEvent) -> None:
    """Refused (422) for a triggered event the store lists no trigger for."""
    if event.event in TRIGGERED_EVENTS and not any(t.event == event.event
                                                   for t in triggers(store.event_triggers, store.events)):
        raise Refused(422, f"{event.event} is sent only for triggers the store lists (event_triggers)")


# -- limits ----------------------------------------------------------------------------
class EventLimits:
    """The request counters of `/events`, in the database."""

    def __init__(self, engine: Engine) -> None:
        self.windows = FixedWindows(engine.dialect)

    def counter(self, store: StoreConfig, who: Caller, *, address: str | None, per_address: int,
                now: datetime) -> Callable[[Any], None]:
        """What counts one request inside the write that stores its event (one commit for
        both); it raises RateLimited over a limit, which rolls that write back."""
        limits = [Limit(STORE_SCOPE, store.id, store.clicks_per_minute)]
        if who is not Caller.SERVER:
            limits.append(Limit(ADDRESS_SCOPE, address_key(address), per_address))
        return lambda cursor: self.windows.take_on_cursor(cursor, limits, now=now)


__all__ = [
    "ADDRESS_SCOPE", "EVENT_BODY_LIMIT", "FIELDS", "REQUIRED", "SANDBOX_EVENTS", "STORE_SCOPE", "EventLimits",
    "check_caller", "check_trigger", "parse_event",
]
