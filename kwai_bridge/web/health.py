"""Health checks: `/healthz` (the process answers) and `/readyz` (it can do its work)."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

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
        problems.append("the stores file defines no store")
    try:
        runtime.outbox.ping()
    except Exception as exc:  # any database failure means not ready
        problems.append(f"database unreachable: {exc.__class__.__name__}")
    if problems:
        return jsonify({"status": "not ready", "problems": problems}), 503
    return jsonify({"status": "ready", "stores": len(runtime.registry.stores)})
