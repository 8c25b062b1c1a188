"""`POST /clicks/<store_id>`: the public API the snippet (or anything else) reports
clicks to, with its limits; its front (CORS, caller, body) is kwai_bridge.web.public.
The rules are kwai_bridge.clicks."""
from __future__ import annotations

import logging
import math
from typing import Any

from flask import Blueprint, Response, current_app, request

from kwai_bridge import clicks
from kwai_bridge.config import StoreConfig
from kwai_bridge.ratelimit import RateLimited
from kwai_bridge.web import storefront
from kwai_bridge.web.public import add_cors, public_post
from kwai_bridge.web.responses import json_response

log = logging.getLogger(__name__)
blueprint = Blueprint("clicks", __name__)
blueprint.after_request(add_cors)


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
    app.extensions["kwai_bridge.attribution"] = attribution
    app.register_blueprint(blueprint)
    storefront.install(app, engine=attribution.outbox.engine)
