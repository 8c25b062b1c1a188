"""`POST /events/<store_id>`: storefront events from the snippet and Shopify's checkout
pixel (a product viewed, a search, a cart add, a checkout step, a trigger the store
listed), guarded as `/clicks` is (kwai_bridge.web.public). The rules are
kwai_bridge.storefront; the conversion adapters.storefront; the event goes into the
outbox like a webhook's.

Each request is stored as a delivery keyed by the browser's event id, so the same id
twice is one event; its body is not kept (nothing is reprocessed from it).
"""
from __future__ import annotations

import hashlib
import logging
import math
from typing import Any, Mapping

from flask import Blueprint, Response, current_app, request

import adapters
from adapters.convert import store_choices
from adapters.storefront import BrowserEvent, to_conversion
from kwai_bridge import clicks, metrics, storefront
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import DeliveryOutcome
from kwai_bridge.jsontext import compact
from kwai_bridge.ratelimit import RateLimited
from kwai_bridge.web.public import add_cors, public_post

log = logging.getLogger(__name__)
blueprint = Blueprint("storefront", __name__)
blueprint.after_request(add_cors)


def json_response(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    # The compact JSON the webhook routes write (kwai_bridge.jsontext): this runs on every
    # page view, and `jsonify` costs more than the rest of a refusal.
    return Response(compact(dict(body)) + "\n", status=status, mimetype="application/json", headers=headers)


def _read_event(store: StoreConfig, who: clicks.Caller, body: bytes) -> tuple[BrowserEvent, bytes]:
    event = storefront.parse_event(body)
    storefront.check_caller(who, event)
    storefront.check_trigger(store, event)
    return event, body


@blueprint.route("/events/<store_id>", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def post_event(store_id: str) -> Response:
    found = public_post(store_id, _read_event, limit=storefront.EVENT_BODY_LIMIT, what="event")
    if isinstance(found, Response):
        return found
    store, who, (event, body) = found
    runtime = current_app.extensions["kwai_bridge.runtime"]
    now = current_app.config["CLOCK"]()
    limits: storefront.EventLimits = current_app.extensions["kwai_bridge.event_limits"]
    options = store.conversion_options()
    found = to_conversion(event, platform=store.platform, topics=adapters.REGISTRY[store.platform].TOPICS,
                          options=options, now=now)
    chosen = store_choices([found], options)
    try:
        result = runtime.outbox.accept(
            store_id=store.id, platform=store.platform, topic=f"storefront/{event.event}",
            delivery_key=f"storefront:{event.event_id}", received_at=now, body=b"", headers={},
            conversions=chosen, outcome=DeliveryOutcome.QUEUED if chosen else DeliveryOutcome.IGNORED,
            body_sha256=hashlib.sha256(body).hexdigest(),
            before=limits.counter(store, who, address=request.remote_addr,
                                  per_address=runtime.settings.clicks_per_address, now=now))
    except RateLimited as exc:
        status = ("too many events from this address" if exc.limit.scope == storefront.ADDRESS_SCOPE
                  else "too many events for this store")
        log.info("store %s: storefront event refused: %s", store.id, status)
        return json_response({"status": status}, 429, {"Retry-After": str(math.ceil(exc.retry_after))})
    metrics.events_created(result.added)
    if chosen and found.identifiers and not result.created:
        # Its webhook twin came first and may wait without a click id (a cart whose
        # attribute was lost): the browser's click id is evidence for it.
        current_app.extensions["kwai_bridge.attribution"].record_click(
            store, click_id=event.click_id, identifiers=found.identifiers, order_key=None, now=now)
    if result.duplicate or (chosen and not result.created):
        return json_response({"status": "duplicate"}, 200)
    if not chosen:
        log.info("store %s: storefront %s not sent by this store (events)", store.id, event.event)
        return json_response({"status": "not sent by this store", "event": found.event.event_name}, 202)
    log.info("store %s: storefront %s stored", store.id, found.event.event_name)
    return json_response({"status": "stored", "event": found.event.event_name}, 202)


def install(app: Any, *, engine: Any) -> None:
    """Register the route on `app` with the counters of its limits."""
    app.extensions["kwai_bridge.event_limits"] = storefront.EventLimits(engine)
    app.register_blueprint(blueprint)
