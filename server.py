"""The web app: a factory that wires the parts, the webhook routes and health checks.

It holds no business logic: the pipeline verifies, parses, converts and stores; Kwai
is only ever called by the dispatcher.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from adapters.values import WebhookRequest
from kwai_bridge import clicks
from kwai_bridge.attribution import Attribution, ClickStore
from kwai_bridge.jsontext import compact
from kwai_bridge.pipeline import Answer, Pipeline
from kwai_bridge.privacy import Privacy
from kwai_bridge.runtime import Runtime

log = logging.getLogger(__name__)

webhooks = Blueprint("webhooks", __name__)
health = Blueprint("health", __name__)


def _now() -> datetime:
    return current_app.config["CLOCK"]()


def _answer(answer: Answer) -> Response:
    # The same compact, key-sorted JSON as `jsonify`, without its per-call provider and
    # argument handling: this runs for every webhook.
    return Response(compact(answer.body()) + "\n", status=answer.status, mimetype="application/json")


@webhooks.post("/webhooks/<platform>/<store_id>")
def webhook_for_store(platform: str, store_id: str):
    return _receive(platform, store_id)


@webhooks.post("/webhooks/<platform>")
def webhook_by_shop(platform: str):
    return _receive(platform, None)


def _receive(platform: str, store_id: str | None):
    body = request.get_data(cache=False)  # raw bytes first: the signature covers them exactly
    webhook = WebhookRequest.build(request.headers.items(), body)
    pipeline: Pipeline = current_app.extensions["kwai_bridge.pipeline"]
    return _answer(pipeline.handle(platform, store_id, webhook, now=_now()))


@health.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz():
    runtime: Runtime = current_app.extensions["kwai_bridge.runtime"]
    problems = []
    if runtime.registry.error:
        problems.append(runtime.registry.error)
    elif not len(runtime.registry.stores):
        problems.append("the stores file defines no store")
    try:
        runtime.outbox.ping()
    except Exception as exc:  # any database failure means not ready
        problems.append(f"database unreachable: {exc.__class__.__name__}")
    if problems:
        return jsonify({"status": "not ready", "problems": problems}), 503
    return jsonify({"status": "ready", "stores": len(runtime.registry.stores)})


def _http_error(exc: HTTPException):
    messages = {413: "body larger than the limit", 405: "method not allowed", 404: "not found"}
    return jsonify({"status": messages.get(exc.code, exc.name)}), exc.code


def create_app(test_config: Mapping[str, Any] | None = None, *,
               clock: Callable[[], datetime] | None = None) -> Flask:
    """Build the app. `test_config` holds `KWAI_BRIDGE_*` settings (with or without the
    prefix) that override the environment."""
    environ = dict(os.environ)
    for key, value in (test_config or {}).items():
        environ[key if key.startswith("KWAI_BRIDGE_") else f"KWAI_BRIDGE_{key}"] = str(value)
    runtime = Runtime.from_env(environ)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.config["CLOCK"] = clock or (lambda: datetime.now(timezone.utc))
    app.extensions["kwai_bridge.runtime"] = runtime
    app.extensions["kwai_bridge.pipeline"] = build_pipeline(runtime)
    clicks.install(app, attribution=build_attribution(runtime),
                   clock=lambda: app.config["CLOCK"]().timestamp())
    if runtime.settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=runtime.settings.trusted_proxies,
                                x_proto=runtime.settings.trusted_proxies)
    app.register_blueprint(webhooks)
    app.register_blueprint(health)
    app.register_error_handler(HTTPException, _http_error)
    return app


def build_attribution(runtime: Runtime) -> Attribution:
    return Attribution(ClickStore(runtime.engine), runtime.outbox)


def build_pipeline(runtime: Runtime) -> Pipeline:
    return Pipeline(registry=runtime.registry, outbox=runtime.outbox,
                    resolver=build_attribution(runtime).resolve, privacy=Privacy(runtime.engine))
