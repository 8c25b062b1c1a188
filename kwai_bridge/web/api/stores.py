"""/api/v1/stores: the stores (admins change them; merchants see theirs), a store's
health, replays of its events and a test event to Kwai. What each route does is
`kwai_bridge.admin`'s, shared with the console."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from flask import request

from kwai_bridge.catalog import StoreRecord, store_fields
from kwai_bridge.runtime import webhook_url
from kwai_bridge.web.api.auth import admin, blueprint, json_body, runtime
from kwai_bridge.web.api.schemas import AccuracyQuery, DeleteQuery, ReplayBody, StoreBody, TestEventBody, load
from kwai_bridge.web.responses import json_response


def public_base() -> str:
    """The bridge's address as merchants paste it: KWAI_BRIDGE_PUBLIC_URL, else this request's."""
    return runtime().settings.public_url.rstrip("/") or request.host_url.rstrip("/")


def store_json(record: StoreRecord) -> dict[str, Any]:
    """A store as the API shows it: its fields, each secret as its hint."""
    return {**store_fields(record.config, secrets="hint"), "webhook_url": webhook_url(public_base(), record.config),
            "version": record.version, "created_at": _iso(record.created_at), "updated_at": _iso(record.updated_at)}


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


@blueprint.get("/stores")
def list_stores():
    return json_response({"items": [store_json(r) for r in admin().stores()]}, 200)


@blueprint.post("/stores")
def create_store():
    admin().require_admin()
    record = admin().create(load(StoreBody, json_body()))
    return json_response(store_json(record), 201, {"Location": f"{blueprint.url_prefix}/stores/{record.config.id}"})


@blueprint.get("/stores/<store_id>")
def get_store(store_id: str):
    return json_response(store_json(admin().store(store_id)), 200)


@blueprint.patch("/stores/<store_id>")
def change_store(store_id: str):
    """The body's fields replace the store's; the whole is checked again."""
    admin().require_admin()
    return json_response(store_json(admin().change(store_id, load(StoreBody, json_body()))), 200)


@blueprint.delete("/stores/<store_id>")
def delete_store(store_id: str):
    admin().require_admin()
    force = load(DeleteQuery, request.args)["force"]
    return json_response({"deleted": store_id, "waiting_events": admin().delete(store_id, force=force)}, 200)


@blueprint.get("/stores/<store_id>/health")
def store_health(store_id: str):
    return json_response(admin().health(store_id), 200)


@blueprint.post("/stores/<store_id>/replay")
def replay_store(store_id: str):
    body = load(ReplayBody, json_body())
    return json_response({"replayed": admin().replay(store_id=store_id, **body)}, 200)


@blueprint.post("/stores/<store_id>/test-event")
def test_event(store_id: str):
    """Send one event to Kwai now, with trackFlag true; answer what Kwai said."""
    body = load(TestEventBody, json_body())
    result = admin().test_event(store_id, clickid=body["clickid"], event_name=body["event_name"])
    return json_response({"ok": result.ok, "result": result.result, "http_status": result.http_status,
                          "message": result.message, "hint": result.hint, "endpoint": result.endpoint}, 200)


@blueprint.get("/stores/<store_id>/accuracy")
def store_accuracy(store_id: str):
    """Per day: paid orders in the platform, purchases sent, the reasons for the difference."""
    day = load(AccuracyQuery, request.args).get("since")
    since = (datetime.combine(day, time(), timezone.utc) if day is not None
             else admin().now - timedelta(days=30))
    return json_response({"items": admin().accuracy(store_id, since=since)}, 200)


@blueprint.post("/stores/<store_id>/connect")
def connect_store(store_id: str):
    """Create or repair the store's webhook subscriptions on its platform."""
    return json_response(admin().connect(store_id), 200)


__all__ = ["public_base", "store_json"]
