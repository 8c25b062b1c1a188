"""`POST /clicks/<store_id>`: the public API the snippet (or anything else) reports
clicks to, with its CORS headers and rate limit. The rules are kwai_bridge.clicks."""
from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError

from adapters.values import PayloadError
from kwai_bridge import clicks
from kwai_bridge.web.bodies import read_body
from kwai_bridge.web.responses import json_response

blueprint = Blueprint("clicks", __name__)


@blueprint.after_request
def _cors(response: Response) -> Response:
    if request.path.startswith("/clicks/"):
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


@blueprint.route("/clicks/<store_id>", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def post_click(store_id: str) -> Response:
    runtime = current_app.extensions["kwai_bridge.runtime"]
    store = runtime.registry.stores.get(store_id)
    if request.method == "OPTIONS":  # the preflight: CORS headers come from _cors
        return Response(status=204 if store is not None else 404)
    wait = current_app.extensions["kwai_bridge.click_limiter"].take(request.remote_addr or "-")
    if wait:
        return json_response({"status": "too many requests"}, 429, {"Retry-After": str(int(wait) + 1)})
    if store is None:
        return json_response({"status": "unknown store"}, 404)
    origin = request.headers.get("Origin")
    sandboxed = clicks.pixel_sandbox(store, origin)
    if origin and clicks.allowed_origin(store, origin) is None and not sandboxed:
        return json_response({"status": "origin not allowed"}, 403)
    body = read_body(clicks.CLICK_BODY_LIMIT)  # larger: 413 from the app's error handler
    try:
        click_id, identifiers, order_key = clicks.parse_click(body)
    except PayloadError as exc:
        return json_response({"status": str(exc)}, 400)
    except ValidationError as exc:
        return json_response({"status": "invalid click", "errors": exc.normalized_messages()}, 400)
    if sandboxed and not clicks.sandbox_may_report(identifiers):
        return json_response({"status": "from a sandboxed frame, report a checkout_token only"}, 403)
    clicks.record(current_app.extensions["kwai_bridge.attribution"], store, click_id=click_id,
                  identifiers=identifiers, order_key=order_key, now=current_app.config["CLOCK"]())
    return json_response({"status": "stored"}, 202)


def install(app: Any, *, attribution: Any, clock: Callable[[], float]) -> None:
    """Register the route on `app` with the attribution service and the limiter's clock."""
    app.extensions["kwai_bridge.attribution"] = attribution
    app.extensions["kwai_bridge.click_limiter"] = clicks.RateLimiter(clock=clock)
    app.register_blueprint(blueprint)
