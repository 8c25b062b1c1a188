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
from datetime import datetime
from typing import Any, Callable, Mapping

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
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

_TOKEN = [validate.Length(min=1, max=512), validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII")]
_ID = [validate.Length(min=1, max=128), validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII")]
_TEXT = validate.Length(min=1, max=256)


class EventSchema(Schema):
    """The body of `POST /events/<store_id>`; unknown fields are refused."""

    event = fields.String(required=True, validate=validate.OneOf(EVENTS))
    event_id = fields.String(required=True, validate=[
        validate.Length(min=8, max=64),
        validate.Regexp(r"^[A-Za-z0-9_.:-]+$", error="must be 8 to 64 letters, digits, _ . : or -")])
    click_id = fields.String(required=True, validate=_TOKEN)
    product_id = fields.String(validate=_ID)
    variant_id = fields.String(validate=_ID)
    sku = fields.String(validate=_ID)
    content_name = fields.String(validate=_TEXT)
    content_category = fields.String(validate=_TEXT)
    price = fields.Decimal(validate=validate.Range(min=0, max=10**9), allow_nan=False)
    quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    value = fields.Decimal(validate=validate.Range(min=0, max=10**10), allow_nan=False)
    currency = fields.String(validate=validate.Regexp(r"^[A-Za-z]{3}$", error="must be a 3-letter currency code"))
    query = fields.String(validate=_TEXT)
    cart_token = fields.String(validate=_TOKEN)
    item_count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    checkout_token = fields.String(validate=_TOKEN)

    @validates_schema
    def _together(self, data: Mapping[str, Any], **_kw: Any) -> None:
        if data.get("item_count") and not data.get("cart_token"):
            raise ValidationError("item_count goes with cart_token", "item_count")
        if data.get("event") == "EVENT_SEARCH" and not data.get("query"):
            raise ValidationError("a search needs its query", "query")


_SCHEMA = EventSchema()


def parse_event(body: bytes) -> BrowserEvent:
    """The event a body reports; PayloadError or ValidationError saying what is wrong."""
    data = _SCHEMA.load(load_object(body))
    values = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
    if values.get("cart_token"):
        # Shopify's Ajax cart answers `<token>?key=<key>`; its webhooks name the token alone.
        values["cart_token"] = values["cart_token"].split("?", 1)[0] or None
    if values.get("currency"):
        values["currency"] = values["currency"].upper()
    return BrowserEvent(**{k: v for k, v in values.items() if v not in (None, "")})


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
    "ADDRESS_SCOPE", "EVENT_BODY_LIMIT", "SANDBOX_EVENTS", "STORE_SCOPE", "EventLimits", "EventSchema",
    "check_caller", "check_trigger", "parse_event",
]
