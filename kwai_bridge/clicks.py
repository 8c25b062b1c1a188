"""The rules of the storefront side of attribution: what a click body may hold, who may
report which identifiers, the limits, and the snippet's settings. The routes that apply
them are kwai_bridge.web.clicks and kwai_bridge.web.snippet.

A click body names the click id and at least one identifier the store's webhooks will
carry. A clear `email` or `phone` is hashed at once (never stored nor logged in clear).

Anyone can post, so a click may name only what a stranger cannot guess about someone
else's order: a browser on one of the store's origins reports cart and checkout tokens,
an order id with the order's key, or the e-mail or phone the shopper typed (hashed); a
sandboxed pixel (`Origin: null`) a checkout token only. A customer id can be guessed
(WooCommerce counts them): only the store's own servers, with one of its `click_tokens`,
may report one. A request without `Origin` is not a browser's and must bring such a
token. Browsers get CORS only from the store's own origins.

Limits, counted in the database so that they hold across web workers and machines:
requests a minute per client address (an IPv6 /64; not for the store's servers) and per
store, and entries kept per store (the oldest evicted first; each identifier keeps one).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

import adapters
from adapters.storefront import snippet_events, triggers
from adapters.payload import load_object
from adapters.signing import sha256_email, sha256_phone
from kwai_bridge.attribution import IDENTIFIERS, Attribution, ClickQuota
from kwai_bridge.config import StoreConfig
from kwai_bridge.ratelimit import Limit

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The largest click body accepted; a real one is a few hundred bytes.
CLICK_BODY_LIMIT = 4096
#: The counter of a client address's click requests (`rate_windows.scope`).
ADDRESS_SCOPE = "clicks:address"

_HEX64 = validate.Regexp(r"^[0-9a-fA-F]{64}$", error="must be 64 hexadecimal digits (a SHA-256)")
_TOKEN = [validate.Length(min=1, max=512), validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII")]


class ClickSchema(Schema):
    """The body of `POST /clicks/<store_id>`."""

    click_id = fields.String(required=True, validate=_TOKEN)
    cart_token = fields.String(validate=_TOKEN)
    checkout_token = fields.String(validate=_TOKEN)
    order_id = fields.String(validate=_TOKEN)
    order_key = fields.String(validate=_TOKEN)
    customer_id = fields.String(validate=_TOKEN)
    email_sha256 = fields.String(validate=_HEX64)
    phone_sha256 = fields.String(validate=_HEX64)
    email = fields.String(validate=validate.Length(min=3, max=320))
    phone = fields.String(validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one_identifier(self, data: Mapping[str, Any], **_kw: Any) -> None:
        if data.get("order_key") and not data.get("order_id"):
            raise ValidationError("order_key goes with order_id", "order_key")
        if data.get("order_id") and not data.get("order_key"):
            raise ValidationError("an order id binds only with the order's key (WooCommerce: order_key; "
                                  "Shopify: the order's token), so give order_key", "order_id")
        if not any(data.get(k) for k in (*IDENTIFIERS, "email", "phone")):
            raise ValidationError("give at least one identifier: " + ", ".join((*IDENTIFIERS, "email", "phone")),
                                  "_schema")
        for clear, hashed in (("email", "email_sha256"), ("phone", "phone_sha256")):
            if data.get(clear) and data.get(hashed):
                raise ValidationError(f"give {clear} or {hashed}, not both", clear)
        if data.get("email") and sha256_email(data["email"]) is None:
            raise ValidationError("is not an e-mail address", "email")
        if data.get("phone") and sha256_phone(data["phone"]) is None:
            raise ValidationError("holds no digits", "phone")


_SCHEMA = ClickSchema()


def parse_click(body: bytes) -> tuple[str, dict[str, str], str | None]:
    """`(click id, identifiers, order key)` from a click body, clear e-mail and phone
    hashed; raise PayloadError or ValidationError saying what is wrong."""
    data = _SCHEMA.load(load_object(body))
    identifiers = {k: data[k].strip() for k in IDENTIFIERS if data.get(k)}
    if "cart_token" in identifiers:
        # Shopify's Ajax cart API answers `<token>?key=<key>` (since 2024-06); the order
        # webhook's cart_token is the token alone.
        identifiers["cart_token"] = identifiers["cart_token"].split("?", 1)[0]
        if not identifiers["cart_token"]:
            raise ValidationError({"cart_token": ["holds no token before '?'"]})
    if data.get("email"):
        identifiers["email_sha256"] = sha256_email(data["email"])
    if data.get("phone"):
        identifiers["phone_sha256"] = sha256_phone(data["phone"])
    for kind in ("email_sha256", "phone_sha256"):
        if kind in identifiers:
            identifiers[kind] = identifiers[kind].lower()
    return data["click_id"].strip(), identifiers, data.get("order_key")


# -- who may report --------------------------------------------------------------------
class Caller(StrEnum):
    """Who posts a click, which decides what it may report."""

    SERVER = "server"  # `Authorization: Bearer` with one of the store's click_tokens
    BROWSER = "browser"  # `Origin` is one of the store's own
    SANDBOX = "sandbox"  # `Origin: null` where the platform's pixel runs in a sandboxed frame


#: The identifiers each caller may report. Only what a stranger cannot guess may come
#: without a token: outside a browser `Origin` proves nothing (any client writes it), and
#: a click bound to someone else's order beats that order's own landing URL.
MAY_REPORT: Mapping[Caller, frozenset[str]] = {
    Caller.SERVER: frozenset(IDENTIFIERS),
    # random tokens, an order id with the order's key, what the shopper typed
    Caller.BROWSER: frozenset(IDENTIFIERS) - {"customer_id"},
    # a sandbox can be framed by any site: the unguessable checkout token only
    Caller.SANDBOX: frozenset({"checkout_token"}),
}


class Refused(Exception):
    """A click the caller may not post: `status_code` and the sentence are the answer."""

    def __init__(self, status_code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = dict(headers or {})


_NEEDS_TOKEN = {"WWW-Authenticate": 'Bearer realm="clicks"'}


def caller(store: StoreConfig, *, origin: str | None, authorization: str | None) -> Caller:
    """Who is posting to `store`; Refused with 401 for a request without `Origin` nor a
    valid token, 403 for a browser on another site."""
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        given = token.strip().encode()
        if scheme.lower() == "bearer" and any(hmac.compare_digest(given, t.encode()) for t in store.click_tokens):
            return Caller.SERVER
        raise Refused(401, "the token is not one of the store's click_tokens", _NEEDS_TOKEN)
    if not (origin or "").strip():
        raise Refused(401, "a request without Origin is not a browser's: send the store's click token "
                           "(Authorization: Bearer <token>, one of the store's click_tokens)", _NEEDS_TOKEN)
    if pixel_sandbox(store, origin):
        return Caller.SANDBOX
    if allowed_origin(store, origin) is None:
        raise Refused(403, "origin not allowed")
    return Caller.BROWSER


def check_identifiers(who: Caller, identifiers: Mapping[str, str]) -> None:
    """Refused (403) unless `who` may report every one of `identifiers`."""
    if set(identifiers) <= MAY_REPORT[who]:
        return
    if who is Caller.SANDBOX:
        raise Refused(403, "from a sandboxed frame, report a checkout_token only")
    raise Refused(403, "customer_id can be guessed: only the store's servers report it "
                       "(Authorization: Bearer <one of the store's click_tokens>)")


def allowed_origin(store: StoreConfig | None, origin: str | None) -> str | None:
    """The `Origin` header's value, lower-cased, when it is one of the store's own."""
    origin = (origin or "").strip().lower()
    return origin if store is not None and origin and origin in store.origins() else None


def pixel_sandbox(store: StoreConfig, origin: str | None) -> bool:
    """A Shopify custom pixel runs in a sandboxed iframe without `allow-same-origin`, so
    its requests say `Origin: null`. Any site can frame such a sandbox and so make its
    visitors' browsers post from many addresses: a null origin may report a checkout
    token only, and gets no CORS headers: the pixel posts without reading the answer."""
    return adapters.REGISTRY[store.platform].PIXEL_SANDBOX and (origin or "").strip() == "null"


def address_key(address: str | None) -> str:
    """What a client address is counted under: the address, or for IPv6 its /64 (one
    subscriber's whole prefix)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return "-"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def quota(store: StoreConfig, who: Caller, *, address: str | None, per_address: int) -> ClickQuota:
    """The limits a click from `who` at `address` is held to: the store's, and the
    address's unless the store's own servers post."""
    more = () if who is Caller.SERVER else (Limit(ADDRESS_SCOPE, address_key(address), per_address),)
    return ClickQuota(per_window=store.clicks_per_minute, max_clicks=store.max_clicks, more=more)


def record(attribution: Attribution, store: StoreConfig, *, click_id: str, identifiers: Mapping[str, str],
           order_key: str | None, now: datetime, quota: ClickQuota | None = None) -> None:
    """Store a click reported for `store` (RateLimited past `quota`); the log names the
    kinds of identifier, never their values."""
    attribution.record_click(store, click_id=click_id, identifiers=identifiers, order_key=order_key, now=now,
                             quota=quota)
    log.info("store %s: click stored for %s", store.id, ", ".join(sorted(identifiers)))


# -- the snippet -------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _source(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def snippet_settings(store: StoreConfig, base_url: str) -> dict[str, Any]:
    """The settings the snippet reads from `KWAI_BRIDGE`."""
    base = base_url.rstrip("/")
    return {"endpoint": f"{base}/clicks/{store.id}", "platform": store.platform,
            "clickParams": list(store.click_params), "windowDays": store.click_window_days,
            "consentMode": store.consent_mode, "eventsEndpoint": f"{base}/events/{store.id}",
            "events": snippet_events(store.events),
            "triggers": [t.settings() for t in triggers(store.event_triggers, store.events)]}


def config_line(settings: Mapping[str, Any], *, target: str = "window") -> str:
    """`window.KWAI_BRIDGE = {...};` with `</` escaped so it cannot close a script tag."""
    return f"{target}.KWAI_BRIDGE = " + json.dumps(dict(settings)).replace("</", "<\\/") + ";\n"


def snippet_script(store: StoreConfig, base_url: str, *, name: str, target: str) -> str:
    """The script `name` (under STATIC) for `store`, its settings set on `target` first."""
    return config_line(snippet_settings(store, base_url), target=target) + _source(name)


__all__ = [
    "ADDRESS_SCOPE", "CLICK_BODY_LIMIT", "MAY_REPORT", "STATIC", "Caller", "ClickSchema", "Refused",
    "address_key", "allowed_origin", "caller", "check_identifiers", "config_line", "parse_click", "pixel_sandbox",
    "quota", "record", "snippet_script", "snippet_settings",
]
