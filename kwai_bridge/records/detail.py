"""One event or one delivery in detail, as an operator debugging a store reads it."""
from __future__ import annotations

import json
from typing import Any, Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from kwai_bridge.config import StoreConfig
from kwai_bridge.db import deliveries, event_attempts, events
from kwai_bridge.kwai import wire
from kwai_bridge.kwai.events import EventError
from kwai_bridge.outbox import EventRow, event_row
from kwai_bridge.records.shapes import attempt_json, delivery_json, event_json, iso
from kwai_bridge.sealing import hint


def _visible(store_id: str, stores: Sequence[str] | None) -> bool:
    return stores is None or store_id in stores


def sent_body(row: EventRow, store: StoreConfig | None) -> dict[str, Any] | None:
    """The body the dispatcher sends Kwai for `row` with the store's settings as they are
    now (a GET store's query fields), the access token masked; None when the store is not
    configured or the event cannot be sent (no click id yet, say)."""
    if store is None:
        return None
    credentials = dict(pixel_id=store.pixel_id, access_token=hint(store.access_token), track_flag=store.test_mode)
    try:
        if store.send_method == "get":
            return wire.get_query(row.event, **credentials)
        return wire.post_body(row.event, **credentials)
    except EventError:
        return None


def event_detail(conn: Connection, event_id: int, *, stores: Sequence[str] | None, registry: Any) -> dict | None:
    """The event's list shape plus what was sent, Kwai's last answer, every attempt, its
    delivery and its click; None when there is no such event among `stores`."""
    e, a, d = events.c, event_attempts.c, deliveries.c
    found = conn.execute(select(events).where(e.id == event_id)).mappings().first()
    if found is None or not _visible(found["store_id"], stores):
        return None
    row = event_row(found)
    attempts = conn.execute(select(event_attempts).where(a.event_id == event_id).order_by(a.id)).mappings()
    delivery = None
    if row.delivery_id is not None:
        delivery = conn.execute(select(d.id, d.topic, d.received_at, d.outcome, d.delivery_key)
                                .where(d.id == row.delivery_id)).mappings().first()
    item = event_json(row)
    # "attempts" becomes the list of attempts here; the list shape's count stays as well.
    item["attempt_count"] = item["attempts"]
    item.update(
        sent_body=sent_body(row, registry.stores.get(row.store_id)),
        kwai_answer=row.last_response,
        attempts=[attempt_json(m) for m in attempts],
        delivery=None if delivery is None else {
            "id": delivery["id"], "topic": delivery["topic"], "received_at": iso(delivery["received_at"]),
            "outcome": delivery["outcome"], "delivery_key": delivery["delivery_key"]},
        click={"id": row.event.click_id, "source": row.click_source, "note": row.click_note},
    )
    return item


def delivery_detail(conn: Connection, delivery_id: int, *, stores: Sequence[str] | None) -> dict | None:
    """The delivery's list shape plus its stored headers (signatures were never kept), the
    size of its body while it is kept, and the events it yielded; never the body."""
    d, e = deliveries.c, events.c
    columns = [c for c in deliveries.c if c.name != "body"]
    found = conn.execute(select(*columns, func.length(d.body).label("body_size"))
                         .where(d.id == delivery_id)).mappings().first()
    if found is None or not _visible(found["store_id"], stores):
        return None
    item = delivery_json(found)
    item.update(
        headers=_headers(found["headers"]),
        body_retained=found["body_size"] is not None,
        body_size=found["body_size"],
        event_ids=list(conn.execute(select(e.id).where(e.delivery_id == delivery_id).order_by(e.id)).scalars()),
    )
    return item


def _headers(raw: str | None) -> dict[str, str] | None:
    return json.loads(raw) if raw else None
