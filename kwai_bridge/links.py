"""Each store's link to its platform's Admin API, kept in `platform_links`: connected
or disconnected (with the platform's message), the credentials' digest that status was
found with, when the subscriptions were last checked, and reconciliation's checkpoint.

A store is `connected` once `stores connect` succeeded; credentials refused (401/403)
make it `disconnected`, and nothing calls its API again until its credentials change
(`usable`). A store without a row is `not connected`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from kwai_bridge.config import StoreConfig
from kwai_bridge.db import platform_links, reading
from kwai_bridge.platforms import credentials_of

CONNECTED = "connected"
DISCONNECTED = "disconnected"
NOT_CONNECTED = "not connected"


@dataclass(frozen=True)
class Link:
    store_id: str
    status: str
    message: str | None
    credentials: str
    since: datetime
    watched_at: datetime | None = None
    checkpoint: datetime | None = None
    reconciled_at: datetime | None = None

    def describe(self) -> str:
        return f"{self.status}: {self.message}" if self.status == DISCONNECTED and self.message else self.status


def _link(row) -> Link:
    return Link(row.store_id, row.status, row.message, row.credentials, row.since, row.watched_at, row.checkpoint,
                row.reconciled_at)


class Links:
    """Reads and changes of `platform_links`, each one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, store_id: str) -> Link | None:
        with reading(self.engine) as conn:
            row = conn.execute(select(platform_links).where(platform_links.c.store_id == store_id)).first()
        return _link(row) if row is not None else None

    def all(self) -> dict[str, Link]:
        with reading(self.engine) as conn:
            return {row.store_id: _link(row) for row in conn.execute(select(platform_links))}

    def status_of(self, store: StoreConfig, link: Link | None) -> str:
        """`connected`, `disconnected: <message>` or `not connected`."""
        return link.describe() if link is not None else NOT_CONNECTED

    @staticmethod
    def usable(store: StoreConfig, link: Link | None) -> bool:
        """Whether the worker may call the store's API: connected, or disconnected with
        credentials that have changed since they were refused."""
        if link is None or not store.has_admin_api():
            return False
        return link.status == CONNECTED or link.credentials != credentials_of(store)

    def set_status(self, store: StoreConfig, status: str, *, now: datetime, message: str | None = None) -> None:
        """Record `status`; `since` moves only when the status (or message) changes."""
        values = {"status": status, "message": message, "credentials": credentials_of(store)}
        with self.engine.begin() as conn:
            current = conn.execute(select(platform_links.c.status, platform_links.c.message)
                                   .where(platform_links.c.store_id == store.id)).first()
            if current is None:
                conn.execute(platform_links.insert().values(store_id=store.id, since=now, **values))
            else:
                changed = (current.status, current.message) != (status, message)
                conn.execute(update(platform_links).where(platform_links.c.store_id == store.id)
                             .values(**values, **({"since": now} if changed else {})))

    def forget(self, store_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(platform_links).where(platform_links.c.store_id == store_id))

    def watched(self, store_id: str, *, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(platform_links).where(platform_links.c.store_id == store_id).values(watched_at=now))

    @staticmethod
    def advance(conn: Connection, store_id: str, *, checkpoint: datetime | None, now: datetime) -> None:
        """Move the checkpoint (inside the transaction that commits a page)."""
        values = {"reconciled_at": now, **({"checkpoint": checkpoint} if checkpoint is not None else {})}
        conn.execute(update(platform_links).where(platform_links.c.store_id == store_id).values(**values))


__all__ = ["CONNECTED", "DISCONNECTED", "NOT_CONNECTED", "Link", "Links"]
