"""What waits in the outbox, read at the moment it is asked for (a scrape of /metrics):
events by status, the age of the oldest due event, the stores held, and the deliveries
waiting for the worker's conversion and the age of the oldest.

Each query reads an index range (`ix_events_status_id`, `ix_events_status_due`,
`ix_deliveries_received`) whose size is the backlog's, not the table's: sent and skipped
events and converted deliveries, the bulk of the tables, are never counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping

from sqlalchemy import func, select

from kwai_bridge.db import DeliveryOutcome, EventStatus, deliveries, events, reading
from kwai_bridge.kwai.client import TOKEN_REFUSED

#: The statuses a backlog counts: events still to be sent, or to be looked at.
COUNTED = (EventStatus.PENDING, EventStatus.SENDING, EventStatus.HELD, EventStatus.DEAD, EventStatus.UNATTRIBUTED)


@dataclass(frozen=True)
class Backlog:
    """The outbox's backlog at one moment."""

    events: Mapping[str, int]  # status -> events, for each of COUNTED
    oldest_due_seconds: float  # age of the oldest pending event whose time has come (0: none)
    stores_held: int  # stores with events held because Kwai refused their access token
    received: int = 0  # deliveries waiting for the worker's conversion
    oldest_received_seconds: float = 0.0  # how long the oldest of them has waited (0: none)


def read_backlog(engine, *, now: datetime) -> Backlog:
    """The backlog in the database of `engine` at `now`."""
    e = events.c
    with reading(engine) as conn:
        counts = {status.value: conn.execute(select(func.count()).where(e.status == status)).scalar() or 0
                  for status in COUNTED}
        oldest = conn.execute(select(func.min(e.next_attempt_at)).where(
            e.status == EventStatus.PENDING, e.next_attempt_at <= now)).scalar()
        held = conn.execute(select(func.count(e.store_id.distinct())).where(
            e.status == EventStatus.HELD, e.last_result == TOKEN_REFUSED)).scalar() or 0
        d = deliveries.c
        waiting = d.outcome == DeliveryOutcome.RECEIVED
        received = conn.execute(select(func.count()).where(waiting)).scalar() or 0
        first = conn.execute(select(d.received_at).where(waiting).order_by(d.id).limit(1)).scalar()
    return Backlog(events=counts, oldest_due_seconds=_age(now, oldest), stores_held=held, received=received,
                   oldest_received_seconds=_age(now, first))


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0
