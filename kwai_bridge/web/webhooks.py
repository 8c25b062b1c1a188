"""The webhook routes: the raw request to the pipeline, its answer back as JSON.

This is the busiest path of the app: it does nothing the pipeline does not need.
"""
from __future__ import annotations

import logging
from time import perf_counter

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from adapters.values import WebhookRequest
from kwai_bridge import metrics
from kwai_bridge.db import database_errors
from kwai_bridge.jsontext import compact
from kwai_bridge.pipeline import Answer, Pipeline
from kwai_bridge.web.bodies import read_body

log = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)
#: The answer when the database fails, and how long a platform that reads it should wait.
STORAGE_UNAVAILABLE = "storage unavailable"
RETRY_AFTER_SECONDS = "10"


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
    try:
        answer = pipeline.handle(platform, store_id, webhook, now=current_app.config["CLOCK"]())
    except database_errors() as exc:
        # The database failed (unreachable, restarting): nothing of this delivery was
        # kept, and any answer but a 2xx makes the platform send it again. One line, no
        # traceback: a restart answers every webhook of its second this way.
        log.error("%s webhook not stored, the database failed: %s", platform, str(exc).split("\n", 1)[0])
        answer = Answer(503, STORAGE_UNAVAILABLE)
    response = _answer(answer)
    if answer.status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    metrics.webhook(platform, answer.topic, status=answer.status, message=answer.message,
                    seconds=perf_counter() - started)
    return response
