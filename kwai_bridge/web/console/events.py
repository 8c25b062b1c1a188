"""A store's event log (filters, keyset pages) and one event: what was sent to Kwai
(token masked), each attempt's answer, the click id and where it came from, the delivery
it came from, and "retry now" / "replay"."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from flask import redirect, request, url_for

from kwai_bridge.db import EventStatus, reading
from kwai_bridge.overview import delivery_body
from kwai_bridge.records import BadQuery, Records
from kwai_bridge.web.console.auth import admin, blueprint, page, runtime

FILTERS = ("status", "event_name", "order", "since")


def _since(text: str) -> datetime | None:
    """A day (2026-12-01) or a time, read as UTC; None when empty or not a date."""
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


@blueprint.get("/stores/<store_id>/events")
def event_log(store_id: str):
    admin().visible_store(store_id)
    chosen = {k: request.args.get(k, "").strip() for k in FILTERS}
    problems = []
    since = _since(chosen["since"]) if chosen["since"] else None
    if chosen["since"] and since is None:
        problems.append("From: write a day as 2026-12-01")
    try:
        found = Records(runtime().engine).events(
            stores=[store_id], status=chosen["status"] or None, event_name=chosen["event_name"] or None,
            order=chosen["order"] or None, since=since, cursor=request.args.get("cursor") or None, limit=50)
    except BadQuery as exc:
        problems.append(str(exc))
        found = None
    next_url = None
    if found is not None and found.next_cursor:
        next_url = url_for("console.event_log", store_id=store_id, cursor=found.next_cursor,
                           **{k: v for k, v in chosen.items() if v})
    return page("events.html", 400 if problems else 200, title=f"{store_id}: events", store_id=store_id,
                items=found.items if found else [], chosen=chosen, statuses=[s.value for s in EventStatus],
                problems=problems, next_url=next_url, first=not request.args.get("cursor"))


@blueprint.get("/events/<int:event_id>")
def event_page(event_id: int):
    found = admin().event(event_id)  # the caller may see it: so may they its delivery
    raw_body = None
    if found["delivery"] is not None:
        with reading(runtime().engine) as conn:
            raw_body = delivery_body(conn, found["delivery"]["id"])
    return page("event.html", title=f"Event {event_id}", event=found, replayed=request.args.get("replayed"),
                raw_body=raw_body,
                sent_body=json.dumps(found["sent_body"], indent=2, sort_keys=True, ensure_ascii=False) if found["sent_body"] is not None else None)


@blueprint.post("/events/<int:event_id>/replay")
def replay_event(event_id: int):
    moved = admin().replay(event_id=event_id)
    return redirect(url_for("console.event_page", event_id=event_id, replayed=moved))
