"""What the storefront's public POST routes (`/clicks`, `/events`) share: CORS headers for
the store's own origins, and the front of a request (the store, the preflight, who
posts, the body read under a limit and parsed, or the answer refusing it)."""
from __future__ import annotations

import logging
from typing import Callable, TypeVar

from flask import Response, current_app, request
from marshmallow import ValidationError

from adapters.values import PayloadError
from kwai_bridge import clicks
from kwai_bridge.config import StoreConfig
from kwai_bridge.web.bodies import read_body
from kwai_bridge.web.responses import json_response

log = logging.getLogger(__name__)
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


__all__ = ["add_cors", "public_post"]
