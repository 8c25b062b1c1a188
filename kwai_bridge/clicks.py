"""The storefront side of attribution: the snippet the bridge serves, and the public
`POST /clicks/<store_id>` API the snippet (or anything else) reports clicks to.

A click body names the click id and at least one identifier the store's webhooks will
carry. A clear `email` or `phone` is hashed at once (never stored nor logged in clear).
Browsers get CORS only from the store's own origins; every client address is limited by
an in-process token bucket (each web worker has its own).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from adapters.payload import load_object
from adapters.signing import sha256_email, sha256_phone
from adapters.values import PayloadError
from kwai_bridge.attribution import IDENTIFIERS
from kwai_bridge.config import StoreConfig

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The largest click body accepted; a real one is a few hundred bytes.
CLICK_BODY_LIMIT = 4096
#: Per client address: 120 requests a minute, bursts of 60.
RATE_PER_MINUTE = 120
BURST = 60
SNIPPET_MAX_AGE = 300

clicks_api = Blueprint("clicks", __name__)

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
    if data.get("email"):
        identifiers["email_sha256"] = sha256_email(data["email"])
    if data.get("phone"):
        identifiers["phone_sha256"] = sha256_phone(data["phone"])
    for kind in ("email_sha256", "phone_sha256"):
        if kind in identifiers:
            identifiers[kind] = identifiers[kind].lower()
    return data["click_id"].strip(), identifiers, data.get("order_key")


# -- the rate limit ----------------------------------------------------------------------
class RateLimiter:
    """A token bucket per client address: `per_minute` sustained, `burst` at once.

    In-process: with several web workers each keeps its own buckets, so a client may
    reach workers x the limit. `clock` returns seconds (any origin).
    """

    def __init__(self, *, clock: Callable[[], float], per_minute: float = RATE_PER_MINUTE,
                 burst: int = BURST, max_clients: int = 10_000) -> None:
        self.clock = clock
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token of `client`; return 0 when allowed, else seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # the longest idle: its bucket is full again
            return 0.0 if allowed else (1.0 - tokens) / self.rate


# -- the snippet -------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _source(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def snippet_settings(store: StoreConfig, base_url: str) -> dict[str, Any]:
    """The settings the snippet reads from `KWAI_BRIDGE`."""
    return {"endpoint": f"{base_url.rstrip('/')}/clicks/{store.id}", "platform": store.platform,
            "clickParams": list(store.click_params), "windowDays": store.click_window_days,
            "consentMode": store.consent_mode}


def config_line(settings: Mapping[str, Any], *, target: str = "window") -> str:
    """`window.KWAI_BRIDGE = {...};` with `</` escaped so it cannot close a script tag."""
    return f"{target}.KWAI_BRIDGE = " + json.dumps(dict(settings)).replace("</", "<\\/") + ";\n"


def _script(store_id: str, name: str, target: str) -> Response:
    runtime = current_app.extensions["kwai_bridge.runtime"]
    store = runtime.registry.stores.get(store_id)
    if store is None:
        return _json({"status": "unknown store"}, 404)
    base = runtime.settings.public_url or request.host_url
    body = config_line(snippet_settings(store, base), target=target) + _source(name)
    response = Response(body, mimetype="application/javascript")
    response.headers["Cache-Control"] = f"public, max-age={SNIPPET_MAX_AGE}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(hashlib.sha256(body.encode("utf-8")).hexdigest()[:32])
    return response.make_conditional(request)


@clicks_api.get("/snippet/<store_id>.js")
def snippet(store_id: str) -> Response:
    return _script(store_id, "snippet.js", "window")


@clicks_api.get("/snippet/<store_id>/pixel.js")
def pixel(store_id: str) -> Response:
    # Shopify's pixel sandbox may be a worker, where `window` does not exist.
    return _script(store_id, "shopify-pixel.js", "self")


# -- POST /clicks/<store_id> -----------------------------------------------------------------
def _json(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify(dict(body))
    response.status_code = status
    response.headers.update(dict(headers or {}))
    return response


def _allowed_origin(store: StoreConfig | None) -> str | None:
    origin = (request.headers.get("Origin") or "").strip().lower()
    return origin if store is not None and origin and origin in store.origins() else None


def _pixel_sandbox(store: StoreConfig) -> bool:
    """A Shopify custom pixel runs in a sandboxed iframe without `allow-same-origin`, so
    its requests say `Origin: null`. Any site can frame such a sandbox and so make its
    visitors' browsers post from many addresses: a null origin may report a checkout
    token only (random, not guessable like an order id or cart contents), and gets no
    CORS headers: the pixel posts without reading the answer."""
    return store.platform == "shopify" and (request.headers.get("Origin") or "").strip() == "null"


@clicks_api.after_request
def _cors(response: Response) -> Response:
    if request.path.startswith("/clicks/"):
        response.vary.add("Origin")
        store = current_app.extensions["kwai_bridge.runtime"].registry.stores.get(
            (request.view_args or {}).get("store_id", ""))
        origin = _allowed_origin(store)
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


@clicks_api.route("/clicks/<store_id>", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def post_click(store_id: str) -> Response:
    runtime = current_app.extensions["kwai_bridge.runtime"]
    store = runtime.registry.stores.get(store_id)
    if request.method == "OPTIONS":  # the preflight: CORS headers come from _cors
        return Response(status=204 if store is not None else 404)
    wait = current_app.extensions["kwai_bridge.click_limiter"].take(request.remote_addr or "-")
    if wait:
        return _json({"status": "too many requests"}, 429, {"Retry-After": str(int(wait) + 1)})
    if store is None:
        return _json({"status": "unknown store"}, 404)
    sandboxed = _pixel_sandbox(store)
    if request.headers.get("Origin") and _allowed_origin(store) is None and not sandboxed:
        return _json({"status": "origin not allowed"}, 403)
    request.max_content_length = CLICK_BODY_LIMIT  # larger: 413 from the app's error handler
    try:
        click_id, identifiers, order_key = parse_click(request.get_data(cache=False))
    except PayloadError as exc:
        return _json({"status": str(exc)}, 400)
    except ValidationError as exc:
        return _json({"status": "invalid click", "errors": exc.normalized_messages()}, 400)
    if sandboxed and set(identifiers) != {"checkout_token"}:
        # Any site can frame a sandbox: from one, only the unguessable checkout token.
        return _json({"status": "from a sandboxed frame, report a checkout_token only"}, 403)
    now = current_app.config["CLOCK"]()
    current_app.extensions["kwai_bridge.attribution"].record_click(
        store, click_id=click_id, identifiers=identifiers, order_key=order_key, now=now)
    log.info("store %s: click stored for %s", store.id, ", ".join(sorted(identifiers)))
    return _json({"status": "stored"}, 202)


def install(app: Any, *, attribution: Any, clock: Callable[[], float]) -> None:
    """Register the routes on `app` with the attribution service and the limiter's clock."""
    app.extensions["kwai_bridge.attribution"] = attribution
    app.extensions["kwai_bridge.click_limiter"] = RateLimiter(clock=clock)
    app.register_blueprint(clicks_api)


__all__ = [
    "CLICK_BODY_LIMIT", "ClickSchema", "RateLimiter", "clicks_api", "config_line", "install",
    "parse_click", "snippet_settings",
]
