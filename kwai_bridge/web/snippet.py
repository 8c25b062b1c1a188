"""The snippet routes: the storefront script with the store's settings, cacheable.

The script names the endpoint shoppers' browsers post click ids to, so that address never
comes from a request header a client chose: it is `KWAI_BRIDGE_PUBLIC_URL`. Without it,
only a loopback Host (`make run`, tests) is served, and not to shared caches; any other
Host is refused with a sentence naming the setting.
"""
from __future__ import annotations

import hashlib
import ipaddress
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from kwai_bridge.clicks import snippet_script
from kwai_bridge.web.responses import json_response

SNIPPET_MAX_AGE = 300
NO_PUBLIC_URL = ("set KWAI_BRIDGE_PUBLIC_URL to the bridge's public address: the snippet's endpoint is "
                 "never taken from the Host header (only loopback hosts are served without it)")

blueprint = Blueprint("snippet", __name__)


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a Host header, with or without its port) names this machine."""
    try:
        name = (urlsplit("//" + host).hostname or "").rstrip(".")
    except ValueError:  # an unbalanced [ or a port that is not a number
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _script(store_id: str, name: str, target: str) -> Response:
    runtime = current_app.extensions["kwai_bridge.runtime"]
    store = runtime.registry.get(store_id)
    if store is None:
        return json_response({"status": "unknown store"}, 404)
    if runtime.settings.public_url:
        base, cache = runtime.settings.public_url, f"public, max-age={SNIPPET_MAX_AGE}"
    elif is_loopback_host(request.host):
        base, cache = request.host_url, "private, no-cache"  # a shared cache must not keep a Host's answer
    else:
        return json_response({"status": NO_PUBLIC_URL}, 503, {"Cache-Control": "no-store"})
    body = snippet_script(store, base, name=name, target=target)
    response = Response(body, mimetype="application/javascript")
    response.headers["Cache-Control"] = cache
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
