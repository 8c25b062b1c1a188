"""The service at a glance (`GET /api/v1/status`, the console's header): whether Kwai
answered in the last minutes, from the dispatcher's recorded attempts, and how many
stores are held (their events parked until an operator replays them).

`/readyz` stays about this process; this is about the service as the stores see it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.engine import Engine

from kwai_bridge.db import EventStatus, event_attempts, events, reading, stores as stores_table

#: Kwai counts as reachable when it answered an attempt this recently.
RECENT = timedelta(minutes=10)
#: The latest attempts looked at (newest by id: read through the primary key).
LOOK_AT = 50


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def service_status(engine: Engine, *, now: datetime, stores: tuple[str, ...] | None = None) -> dict:
    """`kwai`: reachable (True: it answered within RECENT; False: attempts within RECENT
    and no answer; None: no attempt lately), and `held_stores` among `stores` (None: all) that still exist."""
    a, e = event_attempts.c, events.c
    with reading(engine) as conn:
        latest = conn.execute(select(a.at, a.result, a.status).order_by(a.id.desc()).limit(LOOK_AT)).all()
        # one index probe per store on (store_id, status, id), not a walk over every held event
        s = stores_table.c
        held = select(s.id).where(exists().where(e.store_id == s.id, e.status == EventStatus.HELD))
        if stores is not None:
            held = held.where(s.id.in_(stores))
        held_stores = sorted(conn.execute(held).scalars()) if stores is None or stores else []
    recent = [row for row in latest if row.at >= now - RECENT]
    answered = [row.at for row in latest if row.result is not None or row.status == EventStatus.SENT]
    reachable = None if not recent else any(row.result is not None or row.status == EventStatus.SENT
                                            for row in recent)
    return {
        "at": iso(now),
        "kwai": {"reachable": reachable, "last_answer_at": iso(max(answered)) if answered else None,
                 "last_attempt_at": iso(latest[0].at) if latest else None,
                 "window_minutes": int(RECENT.total_seconds() // 60)},
        "held_stores": len(held_stores),
        "held": held_stores,
    }


def headline(status: dict) -> str:
    """The status in one sentence, as the console's header shows it."""
    kwai = status["kwai"]
    if kwai["reachable"] is None:
        words = f"no send to Kwai in the last {kwai['window_minutes']} minutes"
    elif kwai["reachable"]:
        words = "Kwai answering"
    else:
        words = f"Kwai not answering for {kwai['window_minutes']} minutes"
    held = status["held_stores"]
    return f"{words}; {held} store{'s' if held != 1 else ''} held" if held else f"{words}; no store held"


__all__ = ["LOOK_AT", "RECENT", "headline", "service_status"]
