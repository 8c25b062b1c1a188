"""The web app: a factory that builds the process's runtime and wires the routes
(kwai_bridge.web) to it; gunicorn loads `server:create_app()`.

It holds no business logic: the pipeline verifies, parses, converts and stores; Kwai
is only ever called by the dispatcher.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from flask import Flask
from werkzeug.exceptions import HTTPException

# build_pipeline is imported from here by `kwai-bridge deliveries reprocess` for now;
# its home is kwai_bridge.runtime.
from kwai_bridge.runtime import Runtime, build_attribution, build_pipeline
from kwai_bridge.web import api, clicks, console, health, metrics, snippet, webhooks
from kwai_bridge.web.proxies import ForwardedByTrustedProxies
from kwai_bridge.web.responses import http_error


def create_app(test_config: Mapping[str, Any] | None = None, *,
               clock: Callable[[], datetime] | None = None) -> Flask:
    """Build the app. `test_config` holds `KWAI_BRIDGE_*` settings (with or without the
    prefix) that override the environment; a stores file named there (`STORES`) is
    imported as `kwai-bridge serve` imports it at start. gunicorn's workers, built with
    no `test_config`, read the stores the database has."""
    environ = dict(os.environ)
    for key, value in (test_config or {}).items():
        environ[key if key.startswith("KWAI_BRIDGE_") else f"KWAI_BRIDGE_{key}"] = str(value)
    runtime = Runtime.from_env(environ)
    if test_config and any(k in test_config for k in ("STORES", "KWAI_BRIDGE_STORES")):
        runtime.import_stores_file()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.config["CLOCK"] = clock or (lambda: datetime.now(timezone.utc))
    app.extensions["kwai_bridge.runtime"] = runtime
    app.extensions["kwai_bridge.pipeline"] = pipeline = build_pipeline(runtime)
    clicks.install(app, attribution=build_attribution(runtime))
    metrics.install(app, enabled=runtime.settings.metrics)
    # The webhook routes, before Flask (kwai_bridge.web.webhooks); behind the proxies' fix
    # like every other route.
    app.wsgi_app = webhooks.WebhookRoutes(app.wsgi_app, pipeline, clock=app.config["CLOCK"],
                                          max_body=runtime.settings.max_body_bytes)
    proxies = runtime.settings.trusted_proxies
    if proxies.networks:
        app.wsgi_app = ForwardedByTrustedProxies(app.wsgi_app, proxies.networks)
    elif proxies.hops:  # the weaker form: believed from any peer
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies.hops, x_proto=proxies.hops)
    app.register_blueprint(snippet.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(console.blueprint)
    app.register_error_handler(HTTPException, http_error)
    return app


__all__ = ["build_pipeline", "create_app"]
