"""The audit trail: who changed which store, user or token, and who replayed what.

Rows are written inside the transaction that makes the change, so a change and its
record are kept or lost together. `detail` names what changed (field names, counts),
never a secret's value.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from kwai_bridge.db import audit_log, reading

#: Who acts when nobody signed in: the command line, and file imports at start.
CLI_ACTOR = "cli"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat().replace("+00:00", "Z"), "actor": self.actor,
                "action": self.action, "target": self.target, "detail": dict(self.detail)}


def record(conn: Connection, *, actor: str, action: str, target: str, now: datetime,
           detail: Mapping[str, Any] | None = None) -> None:
    """Add one entry in the caller's transaction."""
    conn.execute(audit_log.insert().values(at=now, actor=actor, action=action, target=target,
                                           detail=orjson.dumps(dict(detail or {})).decode()))


def entries(engine: Engine, *, before_id: int | None = None, limit: int = 100,
            target: str | None = None) -> list[AuditEntry]:
    """The newest entries first, older than `before_id` when given (keyset pages)."""
    c = audit_log.c
    query = select(audit_log).order_by(c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(c.id < before_id)
    if target is not None:
        query = query.where(c.target == target)
    with reading(engine) as conn:
        return [AuditEntry(r.id, r.at, r.actor, r.action, r.target, orjson.loads(r.detail or "{}"))
                for r in conn.execute(query)]


__all__ = ["CLI_ACTOR", "AuditEntry", "entries", "record"]
