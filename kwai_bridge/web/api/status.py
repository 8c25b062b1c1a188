"""/api/v1/status: whether Kwai answered the dispatcher in the last minutes, and which of
the caller's stores are held. (`/readyz` is about this process; this is about the service.)"""
from __future__ import annotations

from kwai_bridge.status import service_status
from kwai_bridge.web.api.auth import blueprint, now, principal, runtime
from kwai_bridge.web.responses import json_response


@blueprint.get("/status")
def status():
    return json_response(service_status(runtime().engine, now=now(), stores=principal().visible), 200)
