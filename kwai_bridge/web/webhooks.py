"""The webhook routes: the raw request to the pipeline, its answer back as JSON.

This is the busiest path of the app: it does nothing the pipeline does not need.
"""
from __future__ import annotations

from time import perf_counter

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from adapters.values import WebhookRequest
from kwai_bridge import metrics
from kwai_bridge.jsontext import compact
from kwai_bridge.pipeline import Answer, Pipeline
from kwai_bridge.web.bodies import read_body

blueprint = Blueprint("webhooks", __name__)


def _answer(answer: Answer) -> Response:
    # The same compact, key-sorted JSON as `jsonify`, without its per-call provider and
    # argument handling: this runs for every webhook.
    return Response(compact(answer.body()) + "\n", status=answer.status, mimetype="application/json")


@blueprint.post("/webhooks/<platform>/<store_id>")
def webhook_for_store(platform: str, store_id: str):
    return _receive(platform, store_id)


@blueprint.post("/webhooks/<platform>")
def webhook_by_shop(platform: str):
    return _receive(platform, None)


def _receive(platform: str, store_id: str | None):
    started = perf_counter()
    try:
        # raw bytes first: the signature covers them exactly
        body = read_body(current_app.config["MAX_CONTENT_LENGTH"])
    except HTTPException as exc:  # too large, or cut short
        metrics.webhook(platform, None, status=exc.code or 400, message="", seconds=perf_counter() - started)
        raise
    webhook = WebhookRequest.build(request.headers.items(), body)
    pipeline: Pipeline = current_app.extensions["kwai_bridge.pipeline"]
    answer = pipeline.handle(platform, store_id, webhook, now=current_app.config["CLOCK"]())
    response = _answer(answer)
    metrics.webhook(platform, answer.topic, status=answer.status, message=answer.message,
                    seconds=perf_counter() - started)
    return response
