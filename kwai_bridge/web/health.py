"""Health checks: `/healthz` (the process answers) and `/readyz` (it can do its work)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from kwai_bridge.config import EXAMPLE_FILE
from kwai_bridge.heartbeat import Heartbeats, liveness
from kwai_bridge.runtime import Runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    runtime: Runtime = current_app.extensions["kwai_bridge.runtime"]
    problems = []
    if runtime.registry.error:
        problems.append(runtime.registry.error)
    elif not len(runtime.registry.stores):
        problems.append("no store yet: add one with `kwai-bridge stores import FILE` (see "
                        f"{EXAMPLE_FILE}) or POST /api/v1/stores")
    body = {"status": "ready", "stores": len(runtime.registry.stores)}
    try:
        runtime.outbox.ping()
        stale_after = runtime.settings.dispatcher_stale_seconds
        if stale_after:
            # Read from the shared database: a web-only machine is ready while the
            # dispatchers that run elsewhere beat.
            dispatchers = liveness(Heartbeats(runtime.engine), now=current_app.config["CLOCK"](),
                                   stale_after=stale_after)
            body["dispatchers"] = len(dispatchers.live)
            if dispatchers.problem:
                problems.append(dispatchers.problem)
    except Exception as exc:  # any database failure means not ready
        problems.append(f"database unreachable: {exc.__class__.__name__}")
    if problems:
        return jsonify({"status": "not ready", "problems": problems}), 503
    return jsonify(body)
