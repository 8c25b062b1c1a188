"""The webhook routes, `POST /webhooks/<platform>/<store_id>` and `POST /webhooks/<platform>`:
the raw request to the pipeline, its answer back as JSON.

This is the busiest path of the app, and it is served as plain WSGI in front of Flask
(`WebhookRoutes` wraps the app's `wsgi_app`): Flask's request and app contexts, routing,
hooks and response objects cost a request some 130 microseconds of CPU, a fifth of what
a webhook costs in all, and a webhook needs none of them. Every other path goes on to
Flask. What a webhook answers is what it answered as a Flask route: the same statuses
and JSON bodies, the same body limits (kwai_bridge.web.bodies), 405 for another method.
"""
from __future__ import annotations

import logging
from datetime import datetime
from http import HTTPStatus
from time import perf_counter
from typing import Any, Callable, Iterable

from werkzeug.exceptions import HTTPException

from adapters.values import WebhookRequest
from kwai_bridge import metrics
from kwai_bridge.db import database_errors
from kwai_bridge.jsontext import compact
from kwai_bridge.pipeline import Answer, Pipeline
from kwai_bridge.web.bodies import read_environ_body
from kwai_bridge.web.responses import http_error_body

log = logging.getLogger(__name__)
#: The answer when the database fails, and how long a platform that reads it should wait.
STORAGE_UNAVAILABLE = "storage unavailable"
RETRY_AFTER_SECONDS = "10"
PREFIX = "/webhooks/"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def webhook_route(path: str) -> tuple[str, str | None] | None:
    """`(platform, store_id)` of a webhook path (`store_id` None on the shared route), or
    None when `path` is no webhook route. `path` is WSGI's PATH_INFO (latin-1 text)."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX):].split("/")
    if len(parts) > 2 or not all(parts):
        return None
    # As werkzeug reads a path: the bytes as UTF-8, a broken sequence as U+FFFD.
    parts = [part.encode("latin-1").decode("utf-8", "replace") for part in parts]
    return parts[0], parts[1] if len(parts) == 2 else None


class WebhookRoutes:
    """WSGI: the webhook routes answered here, every other request passed to `app`."""

    def __init__(self, app: WSGIApp, pipeline: Pipeline, *, clock: Callable[[], datetime], max_body: int) -> None:
        self.app = app
        self.pipeline = pipeline
        self.clock = clock
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = webhook_route(environ.get("PATH_INFO", ""))
        if route is None:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _send(start_response, 405, http_error_body(405), [("Allow", "POST")])
        platform, store_id = route
        started = perf_counter()
        try:
            # raw bytes first: the signature covers them exactly
            body = read_environ_body(environ, self.max_body)
        except HTTPException as exc:  # too large, cut short, or its chunks broken
            status = exc.code or 400
            metrics.webhook(platform, None, status=status, message="", seconds=perf_counter() - started)
            return _send(start_response, status, http_error_body(status, exc.name))
        try:
            answer = self._answer(platform, store_id, WebhookRequest(_headers(environ), body))
        except Exception:
            # What a Flask route's unhandled error was: logged with its traceback, a 500.
            log.exception("webhook %s failed", environ.get("PATH_INFO"))
            answer = Answer(500, http_error_body(500)["status"])
        metrics.webhook(platform, answer.topic, status=answer.status, message=answer.message,
                        seconds=perf_counter() - started)
        extra = [("Retry-After", RETRY_AFTER_SECONDS)] if answer.status == 503 else []
        return _send(start_response, answer.status, answer.body(), extra)

    def _answer(self, platform: str, store_id: str | None, webhook: WebhookRequest) -> Answer:
        try:
            return self.pipeline.handle(platform, store_id, webhook, now=self.clock())
        except database_errors() as exc:
            # The database failed (unreachable, restarting): nothing of this delivery was
            # kept, and any answer but a 2xx makes the platform send it again. One line, no
            # traceback: a restart answers every webhook of its second this way.
            log.error("%s webhook not stored, the database failed: %s", platform, str(exc).split("\n", 1)[0])
            return Answer(503, STORAGE_UNAVAILABLE)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name, as WebhookRequest keeps them (WSGI
    spells a name after `HTTP_`, a dash as an underscore)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _send(start_response: Callable[..., Any], status: int, body: dict[str, Any],
          extra: list[tuple[str, str]] = ()) -> list[bytes]:
    # The same compact, key-sorted JSON as `jsonify` writes.
    data = (compact(body) + "\n").encode()
    start_response(_STATUS_LINES.get(status, str(status)),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *extra])
    return [data]


__all__ = ["PREFIX", "RETRY_AFTER_SECONDS", "STORAGE_UNAVAILABLE", "WebhookRoutes", "webhook_route"]
