"""The read side of the admin API: pages of events and deliveries, one event or delivery
in detail, a store's health, and replays.

Every method takes the stores the caller may see (`stores=None`: every store, an admin);
an id of a store outside them behaves exactly like an id that does not exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from sqlalchemy.engine import Engine

from kwai_bridge import audit
from kwai_bridge.db import EventStatus, reading
from kwai_bridge.outbox import Outbox
from kwai_bridge.records.detail import delivery_detail, event_detail
from kwai_bridge.records.health import health
from kwai_bridge.records.pages import MAX_LIMIT, BadQuery, check_choice, delivery_page, event_page
from kwai_bridge.records.shapes import delivery_json, event_json

#: What a replay moves by default, and what `status` may name.
REPLAYABLE = (EventStatus.DEAD, EventStatus.HELD)


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; `next_cursor` is None on the last page."""

    items: list[dict]
    next_cursor: str | None


class Records:
    """Read-only queries over the outbox for the admin API and the command line."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._outbox = Outbox(engine)

    def events(self, *, stores: Sequence[str] | None, status: str | None = None, event_name: str | None = None,
               order: str | None = None, since: datetime | None = None, cursor: str | None = None,
               limit: int = 50) -> Page:
        """Events newest first, filtered; `order` is the platform's order id."""
        with reading(self.engine) as conn:
            rows, next_cursor = event_page(conn, stores=stores, status=status, event_name=event_name, order=order,
                                           since=since, cursor=cursor, limit=limit)
        return Page([event_json(row) for row in rows], next_cursor)

    def event(self, event_id: int, *, stores: Sequence[str] | None, registry: Any) -> dict | None:
        """One event with the body sent to Kwai (token masked), Kwai's answer, its attempts,
        its delivery and its click; None when missing or not among `stores`."""
        with reading(self.engine) as conn:
            return event_detail(conn, event_id, stores=stores, registry=registry)

    def deliveries(self, *, stores: Sequence[str] | None, outcome: str | None = None, cursor: str | None = None,
                   limit: int = 50) -> Page:
        """Webhook deliveries newest first."""
        with reading(self.engine) as conn:
            rows, next_cursor = delivery_page(conn, stores=stores, outcome=outcome, cursor=cursor, limit=limit)
        return Page([delivery_json(row) for row in rows], next_cursor)

    def delivery(self, delivery_id: int, *, stores: Sequence[str] | None) -> dict | None:
        """One delivery (headers, body size and whether the body is still kept; never the body)."""
        with reading(self.engine) as conn:
            return delivery_detail(conn, delivery_id, stores=stores)

    def store_health(self, store_id: str, *, now: datetime) -> dict:
        """Deliveries and events of the last 24 h, holds, the oldest wait, attribution share."""
        with reading(self.engine) as conn:
            return health(conn, store_id, now=now)

    def replay(self, *, now: datetime, stores: Sequence[str] | None, event_id: int | None = None,
               store_id: str | None = None, status: str | None = None, result: int | None = None,
               actor: str | None = None) -> int:
        """Put dead and/or held events (and, by id, a pending one) back to pending due now;
        return how many. With `actor`, the replay is written to the audit trail in the
        same transaction."""
        check_choice(status, REPLAYABLE, "status")
        if stores is not None and store_id is not None and store_id not in stores:
            return 0
        statuses = REPLAYABLE if status is None else (status,)

        def record(conn, moved: int) -> None:
            target = f"event:{event_id}" if event_id is not None else f"store:{store_id}" if store_id else "events"
            detail = {"status": status, "result": result, "replayed": moved}
            audit.record(conn, actor=actor, action="events.replay", target=target, now=now,
                         detail={k: v for k, v in detail.items() if v is not None})

        return self._outbox.replay(now=now, event_id=event_id, store_id=store_id, result=result,
                                    statuses=statuses, stores=stores, retry_pending=event_id is not None,
                                    within=record if actor else None)


__all__ = ["MAX_LIMIT", "REPLAYABLE", "BadQuery", "Page", "Records", "delivery_json", "event_json"]
