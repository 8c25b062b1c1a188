"""/api/v1/events, /api/v1/deliveries and /api/v1/audit: pages newest first, each
filtered in the database to the stores the caller may see."""
from __future__ import annotations

from typing import Any, Sequence

from flask import request

from kwai_bridge import audit
from kwai_bridge.records import Records
from kwai_bridge.web.api.auth import Invalid, NotFound, admin, blueprint, json_body, principal, require_admin, runtime
from kwai_bridge.web.api.schemas import AuditQuery, DeliveriesQuery, EventsQuery, ReplayBody, load
from kwai_bridge.web.responses import json_response


def records() -> Records:
    return Records(runtime().engine)


def _stores(store_id: str | None) -> Sequence[str] | None:
    """The stores a list covers: the caller's, narrowed to `store_id` when given (a store
    the caller may not see gives an empty list, as one that does not exist does)."""
    if store_id is None:
        return principal().visible
    return [store_id] if principal().can_see(store_id) else []


def _page(page) -> dict[str, Any]:
    return {"items": list(page.items), "next_cursor": page.next_cursor}


def _listed(read, query: dict[str, Any]):
    stores = _stores(query.pop("store", None))
    if stores is not None and not stores:
        return json_response({"items": [], "next_cursor": None}, 200)
    try:
        return json_response(_page(read(stores=stores, **query)), 200)
    except ValueError as exc:  # Records' BadQuery: mostly a cursor that is not one of ours
        raise Invalid({"cursor" if str(exc).startswith("cursor") else "query": [str(exc)]}) from None


@blueprint.get("/events")
def list_events():
    return _listed(records().events, load(EventsQuery, request.args))


@blueprint.get("/events/<int:event_id>")
def get_event(event_id: int):
    return json_response(admin().event(event_id), 200)


@blueprint.post("/events/<int:event_id>/replay")
def replay_event(event_id: int):
    body = load(ReplayBody, json_body())
    return json_response({"replayed": admin().replay(event_id=event_id, **body)}, 200)


@blueprint.get("/deliveries")
def list_deliveries():
    return _listed(records().deliveries, load(DeliveriesQuery, request.args))


@blueprint.get("/deliveries/<int:delivery_id>")
def get_delivery(delivery_id: int):
    found = records().delivery(delivery_id, stores=principal().visible)
    if found is None:
        raise NotFound("no such delivery")
    return json_response(found, 200)


@blueprint.get("/audit")
def list_audit():
    require_admin()
    query = load(AuditQuery, request.args)
    found = audit.entries(runtime().engine, before_id=query.get("cursor"), limit=query["limit"],
                          target=query.get("target"))
    more = len(found) == query["limit"]
    return json_response({"items": [e.as_json() for e in found],
                          "next_cursor": str(found[-1].id) if more and found else None}, 200)

