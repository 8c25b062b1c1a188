"""A store's health at a glance: what arrived, what was sent, what waits and why."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from adapters.convert import PURCHASE
from kwai_bridge.db import DeliveryOutcome, EventStatus, deliveries, events
from kwai_bridge.records.shapes import iso

#: Statuses of events still to be sent (waiting for their time, or in a sender's hands).
WAITING = (EventStatus.PENDING, EventStatus.SENDING)


def health(conn: Connection, store_id: str, *, now: datetime) -> dict:
    """The figures of `GET /api/v1/stores/<id>/health` (zeros for a store with no traffic)."""
    d, e = deliveries.c, events.c
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    mine = e.store_id == store_id
    last_delivery = conn.execute(select(d.topic, func.max(d.received_at)).where(d.store_id == store_id)
                                 .group_by(d.topic)).all()
    received = dict(conn.execute(select(d.outcome, func.count()).where(d.store_id == store_id, d.received_at >= day)
                                 .group_by(d.outcome)).all())
    created = dict(conn.execute(select(e.status, func.count()).where(mine, e.created_at >= day)
                                .group_by(e.status)).all())
    held = conn.execute(select(func.count()).where(mine, e.status == EventStatus.HELD)).scalar() or 0
    why = conn.execute(select(e.last_error, e.last_result).where(mine, e.status == EventStatus.HELD)
                       .order_by(e.id.desc()).limit(1)).first()
    oldest = conn.execute(select(func.min(e.created_at)).where(mine, e.status.in_(WAITING))).scalar()
    purchases = conn.execute(
        select(e.status, e.click_source, func.count())
        .where(mine, e.event_name == PURCHASE, e.created_at >= week, e.status != EventStatus.SKIPPED)
        .group_by(e.status, e.click_source)).all()
    total = sum(n for _, _, n in purchases)
    # As `attribution report` counts: a purchase is attributed once it has a click id.
    attributed = sum(n for status, source, n in purchases if status != EventStatus.UNATTRIBUTED and source)
    return {
        "store": store_id,
        "at": iso(now),
        "last_delivery": {topic: iso(at) for topic, at in sorted(last_delivery)},
        "deliveries_24h": {o.value: received.get(o.value, 0) for o in DeliveryOutcome},
        "events_24h": {s.value: created.get(s.value, 0) for s in EventStatus},
        "held": {"held": held > 0, "events": held, "last_error": why.last_error if why else None,
                 "last_result": why.last_result if why else None},
        "oldest_pending_age_seconds": None if oldest is None else max(0, int((now - oldest).total_seconds())),
        "attribution_7d": {"purchases": total, "attributed": attributed,
                           "share": round(attributed / total, 4) if total else None},
    }
