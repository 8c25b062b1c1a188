"""The snippet routes: the storefront script with the store's settings, cacheable."""
from __future__ import annotations

import hashlib

from flask import Blueprint, Response, current_app, request

from kwai_bridge.clicks import snippet_script
from kwai_bridge.web.responses import json_response

SNIPPET_MAX_AGE = 300

blueprint = Blueprint("snippet", __name__)


def _script(store_id: str, name: str, target: str) -> Response:
    runtime = current_app.extensions["kwai_bridge.runtime"]
    store = runtime.registry.stores.get(store_id)
    if store is None:
        return json_response({"status": "unknown store"}, 404)
    base = runtime.settings.public_url or request.host_url
    body = snippet_script(store, base, name=name, target=target)
    response = Response(body, mimetype="application/javascript")
    response.headers["Cache-Control"] = f"public, max-age={SNIPPET_MAX_AGE}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(hashlib.sha256(body.encode("utf-8")).hexdigest()[:32])
    return response.make_conditional(request)


@blueprint.get("/snippet/<store_id>.js")
def snippet(store_id: str) -> Response:
    return _script(store_id, "snippet.js", "window")


@blueprint.get("/snippet/<store_id>/pixel.js")
def pixel(store_id: str) -> Response:
    # Shopify's pixel sandbox may be a worker, where `window` does not exist.
    return _script(store_id, "shopify-pixel.js", "self")
