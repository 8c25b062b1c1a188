"""`POST /clicks/<store_id>`: the public API the snippet (or anything else) reports
clicks to, with its CORS headers and limits. The rules are kwai_bridge.clicks."""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, TypeVar

from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError

from adapters.values import PayloadError
from kwai_bridge import clicks
from kwai_bridge.config import StoreConfig
from kwai_bridge.ratelimit import RateLimited
from kwai_bridge.web.bodies import read_body
from kwai_bridge.web.responses import json_response

log = logging.getLogger(__name__)
blueprint = Blueprint("clicks", __name__)
T = TypeVar("T")


def add_cors(response: Response) -> Response:
    """CORS headers for a browser on one of the store's origins (the store in the path)."""
    if request.path.startswith(("/clicks/", "/events/")):
        response.vary.add("Origin")
        store = current_app.extensions["kwai_bridge.runtime"].registry.stores.get(
            (request.view_args or {}).get("store_id", ""))
        origin = clicks.allowed_origin(store, request.headers.get("Origin"))
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


blueprint.after_request(add_cors)


def public_post(store_id: str, read: Callable[[StoreConfig, clicks.Caller, bytes], T], *, limit: int,
                what: str) -> tuple[StoreConfig, clicks.Caller, T] | Response:
    """The front the storefront's public POST routes share: the store, the preflight, who
    posts (kwai_bridge.clicks.caller), the body read under `limit` bytes and parsed by
    `read(store, caller, body)`, which raises Refused, PayloadError or ValidationError;
    else the answer refusing the request."""
    store = current_app.extensions["kwai_bridge.runtime"].registry.get(store_id)
    if request.method == "OPTIONS":  # the preflight: CORS headers come from add_cors
        return Response(status=204 if store is not None else 404)
    if store is None:
        return json_response({"status": "unknown store"}, 404)
    try:
        who = clicks.caller(store, origin=request.headers.get("Origin"),
                            authorization=request.headers.get("Authorization"))
        body = read_body(limit)  # larger: 413 from the app's error handler
        return store, who, read(store, who, body)
    except clicks.Refused as exc:
        log.info("store %s: %s refused (%d): %s", store.id, what, exc.status_code, exc.message)
        return json_response({"status": exc.message}, exc.status_code, exc.headers)
    except PayloadError as exc:
        return json_response({"status": str(exc)}, 400)
    except ValidationError as exc:
        return json_response({"status": f"invalid {what}", "errors": exc.normalized_messages()}, 400)


def _read_click(store: StoreConfig, who: clicks.Caller, body: bytes) -> tuple[str, dict[str, str], str | None]:
    click_id, identifiers, order_key = clicks.parse_click(body)
    clicks.check_identifiers(who, identifiers)
    return click_id, identifiers, order_key


@blueprint.route("/clicks/<store_id>", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def post_click(store_id: str) -> Response:
    found = public_post(store_id, _read_click, limit=clicks.CLICK_BODY_LIMIT, what="click")
    if isinstance(found, Response):
        return found
    store, who, (click_id, identifiers, order_key) = found
    runtime = current_app.extensions["kwai_bridge.runtime"]
    limits = clicks.quota(store, who, address=request.remote_addr,
                          per_address=runtime.settings.clicks_per_address)
    try:
        clicks.record(current_app.extensions["kwai_bridge.attribution"], store, click_id=click_id,
                      identifiers=identifiers, order_key=order_key, now=current_app.config["CLOCK"](), quota=limits)
    except RateLimited as exc:
        status = ("too many clicks from this address" if exc.limit.scope == clicks.ADDRESS_SCOPE
                  else "too many clicks for this store")
        log.info("store %s: click refused: %s", store.id, status)
        return json_response({"status": status}, 429, {"Retry-After": str(math.ceil(exc.retry_after))})
    return json_response({"status": "stored"}, 202)


def install(app: Any, *, attribution: Any) -> None:
    """Register the storefront's public routes on `app`: this one with the attribution
    service, and `POST /events/<store_id>` (kwai_bridge.web.storefront)."""
    from kwai_bridge.web import storefront  # it imports add_cors from here

    app.extensions["kwai_bridge.attribution"] = attribution
    app.register_blueprint(blueprint)
    storefront.install(app, engine=attribution.outbox.engine)
