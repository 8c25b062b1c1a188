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

from kwai_bridge.records.shapes import event_json


class BadQuery(ValueError):
    """A page asked for with a limit, cursor or filter that cannot be used."""

    status_code = 400


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; `next_cursor` is None on the last page."""

    items: list[dict]
    next_cursor: str | None


class Records:
    """Read-only queries over the outbox for the admin API and the command line."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def events(self, *, stores: Sequence[str] | None, status: str | None = None, event_name: str | None = None,
               order: str | None = None, since: datetime | None = None, cursor: str | None = None,
               limit: int = 50) -> Page:
        """Events newest first, filtered; `order` is the platform's order id."""
        raise NotImplementedError

    def event(self, event_id: int, *, stores: Sequence[str] | None, registry: Any) -> dict | None:
        """One event with the body sent to Kwai (token masked), Kwai's answer, its attempts,
        its delivery and its click; None when missing or not among `stores`."""
        raise NotImplementedError

    def deliveries(self, *, stores: Sequence[str] | None, outcome: str | None = None, cursor: str | None = None,
                   limit: int = 50) -> Page:
        """Webhook deliveries newest first."""
        raise NotImplementedError

    def delivery(self, delivery_id: int, *, stores: Sequence[str] | None) -> dict | None:
        """One delivery (headers, body size and whether the body is still kept; never the body)."""
        raise NotImplementedError

    def store_health(self, store_id: str, *, now: datetime) -> dict:
        """Deliveries and events of the last 24 h, holds, the oldest wait, attribution share."""
        raise NotImplementedError

    def replay(self, *, now: datetime, stores: Sequence[str] | None, event_id: int | None = None,
               store_id: str | None = None, status: str | None = None, result: int | None = None) -> int:
        """Put dead and/or held events (and, by id, a pending one) back to pending due now;
        return how many."""
        raise NotImplementedError


__all__ = ["BadQuery", "Page", "Records", "event_json"]
