"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the admin API (read without a
token). tests/test_api_openapi.py checks every answer of every route against it."""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Mapping

from kwai_bridge.config import PLATFORMS, StoreConfig
from kwai_bridge.db import DeliveryOutcome, EventStatus
from kwai_bridge.kwai.events import EVENT_NAMES
from kwai_bridge.web.api.auth import blueprint
from kwai_bridge.web.api.schemas import MAX_LIMIT
from kwai_bridge.web.responses import json_response

STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
STRINGS = {"type": "array", "items": STR}
TIME = {"type": "string", "format": "date-time"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], *, required: tuple[str, ...] = (), extra: bool = True) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": extra}


def page(item: str) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": ref(item)}, "next_cursor": nullable(STR)},
               required=("items", "next_cursor"), extra=False)


#: What a store's field may hold where its default's type does not say it all.
_FIELD_SCHEMAS = {
    "platform": {"type": "string", "enum": list(PLATFORMS)},
    "webhook_secrets": STRINGS,
    "send_method": {"type": "string", "enum": ["post", "get"]},
    "topic_events": {"type": "object", "additionalProperties": STR},
    "value": {"type": "string", "enum": ["total", "subtotal"]},
    "content_id": {"type": "string", "enum": ["product", "variant", "sku"]},
    "currency_rates": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
}


def _field_schema(field: Any) -> dict[str, Any]:
    if field.name in _FIELD_SCHEMAS:
        return _FIELD_SCHEMAS[field.name]
    default = field.default if field.default is not MISSING else (
        field.default_factory() if field.default_factory is not MISSING else "")
    if isinstance(default, bool):
        return BOOL
    if isinstance(default, int):
        return INT
    if isinstance(default, (tuple, list)):
        return STRINGS
    if isinstance(default, Mapping):
        return {"type": "object", "additionalProperties": STR}
    return STR


#: A store's fields, as in the stores file (what each may hold: README "Stores file"),
#: read from the store's own definition so that a new field is documented at once.
STORE_FIELDS = {f.name: _field_schema(f) for f in fields(StoreConfig)}
_REQUIRED = ("id", "platform", "shop", "webhook_secrets", "pixel_id", "access_token")
_EVENT = {"id": INT, "store": STR, "platform": STR, "event_name": STR, "business_key": STR,
          "status": {"type": "string", "enum": [s.value for s in EventStatus]}, "next_attempt_at": nullable(TIME),
          "last_result": nullable(INT), "last_error": nullable(STR), "created_at": TIME, "sent_at": nullable(TIME)}
EVENT = obj({**_EVENT, "attempts": INT}, required=("id", "store", "event_name", "status"))
#: The detail's `attempts` lists every attempt where the list gives their number.
EVENT_DETAIL = obj({**_EVENT, "attempts": {"type": "array", "items": {"type": "object"}}, "sent_body": {},
                    "kwai_answer": {}, "delivery": nullable({"type": "object"}), "click": {"type": "object"}},
                   required=("id", "store", "event_name", "status", "sent_body", "attempts", "delivery"))
DELIVERY = obj({"id": INT, "store": STR, "topic": STR, "received_at": TIME,
                "outcome": {"type": "string", "enum": [o.value for o in DeliveryOutcome]}},
               required=("id",))
SCHEMAS = {
    "Error": obj({"error": STR}, required=("error",), extra=False),
    "Invalid": obj({"errors": {"type": "object", "additionalProperties": STRINGS}}, required=("errors",), extra=False),
    "StoreInput": obj(STORE_FIELDS, required=_REQUIRED, extra=False),
    "StoreChange": obj(STORE_FIELDS, extra=False),
    "Store": obj({**STORE_FIELDS, "webhook_url": STR, "version": INT, "created_at": TIME, "updated_at": TIME},
                 required=(*_REQUIRED, "webhook_url", "version", "created_at", "updated_at"), extra=False),
    "Stores": obj({"items": {"type": "array", "items": ref("Store")}}, required=("items",), extra=False),
    "Deleted": obj({"deleted": STR, "waiting_events": INT}, required=("deleted", "waiting_events"), extra=False),
    "Health": obj({"store": STR, "at": TIME, "last_delivery": {"type": "object", "additionalProperties": TIME},
                   "deliveries_24h": {"type": "object", "additionalProperties": INT},
                   "events_24h": {"type": "object", "additionalProperties": INT}, "held": {"type": "object"},
                   "oldest_pending_age_seconds": nullable(INT), "attribution_7d": {"type": "object"}},
                  required=("store",)),
    "Replay": obj({"status": {"type": "string", "enum": ["dead", "held"]}, "result": INT}, extra=False),
    "Replayed": obj({"replayed": INT}, required=("replayed",), extra=False),
    "TestEvent": obj({"clickid": {"type": "string", "minLength": 1, "maxLength": 512},
                      "event_name": {"type": "string", "enum": sorted(EVENT_NAMES)}},
                     required=("clickid",), extra=False),
    "TestEventResult": obj({"ok": BOOL, "result": nullable(INT), "http_status": nullable(INT), "message": STR,
                            "hint": nullable(STR), "endpoint": STR},
                           required=("ok", "result", "http_status", "message", "hint", "endpoint"), extra=False),
    "AccuracyDay": obj({"store": STR, "day": STR, "paid_orders": INT, "sent": INT,
                        "reasons": {"type": "object", "additionalProperties": INT},
                        "sources": {"type": "object", "additionalProperties": INT}},
                       required=("store", "day", "paid_orders", "sent", "reasons", "sources"), extra=False),
    "Accuracy": obj({"items": {"type": "array", "items": ref("AccuracyDay")}}, required=("items",), extra=False),
    "ConnectReport": obj({k: STRINGS for k in ("created", "ok", "fixed", "errors")},
                         required=("created", "ok", "fixed", "errors"), extra=False),
    "Event": EVENT,
    "EventDetail": EVENT_DETAIL,
    "Events": page("Event"),
    "Delivery": DELIVERY,
    "Deliveries": page("Delivery"),
    "AuditEntry": obj({"id": INT, "at": TIME, "actor": STR, "action": STR, "target": STR,
                       "detail": {"type": "object"}}, required=("id", "at", "actor", "action", "target", "detail"),
                      extra=False),
    "Audit": page("AuditEntry"),
    "Status": obj({"at": TIME, "kwai": obj({"reachable": nullable(BOOL), "last_answer_at": nullable(TIME),
                                           "last_attempt_at": nullable(TIME), "window_minutes": INT},
                                          required=("reachable", "window_minutes"), extra=False),
                   "held_stores": INT, "held": STRINGS}, required=("at", "kwai", "held_stores", "held"), extra=False),
}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path(name: str, schema: dict[str, Any] = STR) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}, "items per page")
CURSOR = query("cursor", STR, "next_cursor of the page before")
STORE = query("store", STR, "one store's id")


def answers(status: int, schema: str, *errors: int) -> dict[str, Any]:
    """The route's answer and the error answers it may give (401 always)."""
    out = {str(status): _json(f"{schema}", schema)}
    for code in sorted({401, *errors}):
        out[str(code)] = _json({400: "invalid request", 401: "no valid token", 403: "admins only",
                                404: "no such thing, or another tenant's", 409: "conflict"}[code],
                               "Invalid" if code == 400 else "Error")
    return out


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def op(summary: str, responses: dict[str, Any], *, params: list | None = None, body: str | None = None,
       optional_body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "responses": responses, "parameters": params or []}
    if body:
        out["requestBody"] = {"required": not optional_body,
                              "content": {"application/json": {"schema": ref(body)}}}
    return out


STORE_ID, EVENT_ID, DELIVERY_ID = path("store_id"), path("event_id", INT), path("delivery_id", INT)
PATHS = {
    "/openapi.json": {"get": {**op("This document", {"200": {
        "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}),
        "security": []}},
    "/stores": {
        "get": op("The stores the caller may see", answers(200, "Stores")),
        "post": op("Create a store (admins)", answers(201, "Store", 400, 403, 409), body="StoreInput"),
    },
    "/stores/{store_id}": {
        "get": op("One store; secrets shown as hints", answers(200, "Store", 404), params=[STORE_ID]),
        "patch": op("Change some fields (admins); the whole store is checked again",
                    answers(200, "Store", 400, 403, 404, 409), params=[STORE_ID], body="StoreChange"),
        "delete": op("Delete a store (admins); 409 while events wait, unless force=true",
                     answers(200, "Deleted", 400, 403, 404, 409),
                     params=[STORE_ID, query("force", BOOL, "delete even with events waiting")]),
    },
    "/stores/{store_id}/health": {"get": op("Deliveries, events, holds and attribution of a store",
                                            answers(200, "Health", 404), params=[STORE_ID])},
    "/stores/{store_id}/replay": {"post": op("Put the store's dead or held events back to pending, due now",
                                             answers(200, "Replayed", 400, 404), params=[STORE_ID], body="Replay",
                                             optional_body=True)},
    "/stores/{store_id}/test-event": {"post": op("Send one event to Kwai now with trackFlag true",
                                                 answers(200, "TestEventResult", 400, 404), params=[STORE_ID],
                                                 body="TestEvent")},
    "/stores/{store_id}/accuracy": {"get": op(
        "Per day: paid orders in the platform, purchases sent, and a reason for each difference",
        answers(200, "Accuracy", 400, 404), params=[STORE_ID, query("since", {"type": "string", "format": "date"},
                                                                     "from this day (default: 30 days ago)")])},
    "/stores/{store_id}/connect": {"post": op(
        "Create or repair the store's webhook subscriptions on its platform (admins); 409 without a public "
        "HTTPS KWAI_BRIDGE_PUBLIC_URL or the store's Admin API credentials",
        answers(200, "ConnectReport", 403, 404, 409), params=[STORE_ID])},
    "/events": {"get": op("Events, newest first", answers(200, "Events", 400), params=[
        STORE, query("status", {"type": "string", "enum": [s.value for s in EventStatus]}, "status"),
        query("event_name", STR, "Kwai event name"), query("order", STR, "the platform's order id"),
        query("since", TIME, "created at or after"), CURSOR, LIMIT])},
    "/events/{event_id}": {"get": op("An event, the body last sent to Kwai (token masked), every attempt",
                                     answers(200, "EventDetail", 404), params=[EVENT_ID])},
    "/events/{event_id}/replay": {"post": op("Put the event back to pending, due now",
                                             answers(200, "Replayed", 400, 404), params=[EVENT_ID], body="Replay",
                                             optional_body=True)},
    "/deliveries": {"get": op("Webhook deliveries, newest first", answers(200, "Deliveries", 400), params=[
        STORE, query("outcome", {"type": "string", "enum": [o.value for o in DeliveryOutcome]}, "outcome"),
        CURSOR, LIMIT])},
    "/deliveries/{delivery_id}": {"get": op("A delivery: headers, body size, whether the body is kept",
                                            answers(200, "Delivery", 404), params=[DELIVERY_ID])},
    "/status": {"get": op("Whether Kwai answered in the last minutes (null: nothing was sent), and the caller's "
                          "held stores", answers(200, "Status"))},
    "/audit": {"get": op("The audit trail, newest first (admins)", answers(200, "Audit", 400, 403), params=[
        query("target", STR, "what the entries are about, such as store:<id> or user:<email>"),
        query("cursor", {"type": "integer", "minimum": 1}, "next_cursor"), LIMIT])},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "kwai-bridge admin API", "version": "1"},
        "servers": [{"url": blueprint.url_prefix}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "kwai-bridge tokens create EMAIL"}}},
    }


@blueprint.get("/openapi.json")
def openapi_document():
    return json_response(document(), 200)


__all__ = ["document"]
