"""`GET /metrics`: every process's counters and the outbox's backlog, for Prometheus."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request

from kwai_bridge import metrics
from kwai_bridge.backlog import read_backlog
from kwai_bridge.runtime import Runtime

blueprint = Blueprint("metrics", __name__)


def install(app: Flask, *, enabled: bool) -> None:
    """Count in this process (or not: KWAI_BRIDGE_METRICS=off) and serve /metrics."""
    metrics.set_enabled(enabled)
    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
def scrape():
    runtime: Runtime = current_app.extensions["kwai_bridge.runtime"]
    settings = runtime.settings
    if not settings.metrics:
        return Response("metrics are off (KWAI_BRIDGE_METRICS=off)\n", status=404, mimetype="text/plain")
    if not metrics.authorized(request.headers.get("Authorization"), settings.metrics_token):
        return Response("Authorization: Bearer <KWAI_BRIDGE_METRICS_TOKEN> required\n", status=401,
                        mimetype="text/plain", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    backlog = read_backlog(runtime.engine, now=current_app.config["CLOCK"]())
    return Response(metrics.exposition(backlog), mimetype=metrics.CONTENT_TYPE)
