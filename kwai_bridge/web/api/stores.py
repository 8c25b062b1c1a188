"""/api/v1/stores: the stores (admins change them; merchants see theirs), a store's
health, replays of its events and a test event to Kwai."""
from __future__ import annotations

from typing import Any

from flask import request

from kwai_bridge.catalog import StoreRecord, store_fields
from kwai_bridge.config import ConfigErrors, check_store
from kwai_bridge.kwai.events import EventError
from kwai_bridge.records import Records
from kwai_bridge.runtime import webhook_url
from kwai_bridge.testevent import send_test_event
from kwai_bridge.web.api.auth import (
    Invalid, NotFound, actor, blueprint, json_body, now, principal, require_admin, runtime, visible_store,
)
from kwai_bridge.web.api.schemas import DeleteQuery, ReplayBody, StoreBody, TestEventBody, load, store_errors
from kwai_bridge.web.responses import json_response


def store_json(record: StoreRecord) -> dict[str, Any]:
    """A store as the API shows it: its fields, each secret as its hint."""
    base = runtime().settings.public_url.rstrip("/") or request.host_url.rstrip("/")
    return {**store_fields(record.config, secrets="hint"), "webhook_url": webhook_url(base, record.config),
            "version": record.version, "created_at": _iso(record.created_at), "updated_at": _iso(record.updated_at)}


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _checked(entry: dict[str, Any]):
    try:
        return check_store(entry)
    except ConfigErrors as exc:
        raise store_errors(exc) from None


def _record(store_id: str) -> StoreRecord:
    record = runtime().catalog.get(visible_store(store_id))
    if record is None:  # deleted between the two reads
        raise NotFound("no such store")
    return record


@blueprint.get("/stores")
def list_stores():
    records = runtime().catalog.records(principal().visible)
    return json_response({"items": [store_json(r) for r in records]}, 200)


@blueprint.post("/stores")
def create_store():
    require_admin()
    config = _checked(load(StoreBody, json_body()))
    record = runtime().catalog.create(config, actor=actor(), now=now())
    runtime().registry.refresh()
    return json_response(store_json(record), 201, {"Location": f"{blueprint.url_prefix}/stores/{config.id}"})


@blueprint.get("/stores/<store_id>")
def get_store(store_id: str):
    return json_response(store_json(_record(store_id)), 200)


@blueprint.patch("/stores/<store_id>")
def change_store(store_id: str):
    """The body's fields replace the store's; the whole is checked again."""
    require_admin()
    changes = load(StoreBody, json_body())
    if changes.get("id", store_id) != store_id:
        raise Invalid({"id": ["a store's id cannot change (create another store)"]})
    record = _record(store_id)
    config = _checked({**store_fields(record.config, secrets="clear"), **changes})
    # a secret given here replaces the `${NAME}` it was imported from
    refs = {k: v for k, v in record.refs.items() if k not in changes}
    changed = runtime().catalog.replace(config, actor=actor(), now=now(), refs=refs)
    runtime().registry.refresh()
    return json_response(store_json(changed), 200)


@blueprint.delete("/stores/<store_id>")
def delete_store(store_id: str):
    require_admin()
    force = load(DeleteQuery, request.args)["force"]
    waiting = runtime().catalog.delete(visible_store(store_id), actor=actor(), now=now(), force=force)
    runtime().registry.refresh()
    return json_response({"deleted": store_id, "waiting_events": waiting}, 200)


def records() -> Records:
    return Records(runtime().engine)


@blueprint.get("/stores/<store_id>/health")
def store_health(store_id: str):
    return json_response(records().store_health(visible_store(store_id), now=now()), 200)


@blueprint.post("/stores/<store_id>/replay")
def replay_store(store_id: str):
    body = load(ReplayBody, json_body())
    return json_response({"replayed": replay(store_id=visible_store(store_id), **body)}, 200)


def replay(**what: Any) -> int:
    """Put the caller's matching events back to pending, due now, audited in the same
    transaction."""
    return records().replay(now=now(), stores=principal().visible, actor=actor(), **what)


@blueprint.post("/stores/<store_id>/test-event")
def test_event(store_id: str):
    """Send one event to Kwai now, with trackFlag true; answer what Kwai said."""
    body = load(TestEventBody, json_body())
    store = runtime().registry.get(visible_store(store_id))  # a miss looks at the database again
    if store is None:
        raise NotFound(f"no such store: {runtime().registry.error or 'not loaded yet'}")
    client = runtime().kwai_client()
    try:
        result = send_test_event(client, store, clickid=body["clickid"], event_name=body["event_name"], now=now())
    except EventError as exc:
        raise Invalid({"_schema": [str(exc)]}) from None
    finally:
        client.close()
    return json_response({"ok": result.ok, "result": result.result, "http_status": result.http_status,
                          "message": result.message, "hint": result.hint, "endpoint": result.endpoint}, 200)


__all__ = ["records", "replay", "store_json"]
