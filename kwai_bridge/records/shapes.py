"""The JSON shapes of events and deliveries, shared by the admin API and `--json` output,
and the opaque cursors of keyset pages."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from kwai_bridge.outbox import EventRow


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def event_json(row: EventRow) -> dict:
    """The shape of one event in a list (`events list --json`, `GET /api/v1/events`)."""
    return {
        "id": row.id,
        "store": row.store_id,
        "platform": row.platform,
        "event_name": row.event_name,
        "business_key": row.business_key,
        "status": row.status,
        "click_source": row.click_source,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at),
        "last_result": row.last_result,
        "last_error": row.last_error,
        "skip_reason": row.skip_reason,
        "value_note": row.value_note,
        "click_note": row.click_note,
        "value": None if row.event.value is None else str(row.event.value),
        "currency": row.event.currency,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def delivery_json(m: Mapping[str, Any]) -> dict:
    """The shape of one webhook delivery in a list (`GET /api/v1/deliveries`)."""
    return {
        "id": m["id"],
        "store": m["store_id"],
        "platform": m["platform"],
        "topic": m["topic"],
        "delivery_key": m["delivery_key"],
        "received_at": iso(m["received_at"]),
        "outcome": m["outcome"],
        "error": m["error"],
    }


def attempt_json(m: Mapping[str, Any]) -> dict:
    """One send attempt as the dispatcher recorded it."""
    return {"at": iso(m["at"]), "status": m["status"], "result": m["result"], "error": m["error"],
            "response": m["response"]}
