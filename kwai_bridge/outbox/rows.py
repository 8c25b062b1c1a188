"""The outbox's values: rows as read back, outcomes to record, and small helpers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Mapping

from adapters.values import Conversion
from kwai_bridge.db import DeliveryOutcome, EventStatus
from kwai_bridge.kwai.events import KwaiEvent

RESPONSE_LIMIT = 2000
#: Rows per pruning transaction: each holds the writer lock while it runs, so a webhook
#: arriving then waits that long (100 rows: a few milliseconds).
PRUNE_BATCH = 100
_OUTCOMES = tuple(DeliveryOutcome)
#: Header names that must never be stored (signatures and credentials).
_SECRET_HEADER_WORDS = ("hmac", "signature", "authorization", "token", "secret", "cookie")


class UnknownDelivery(LookupError):
    """No delivery has that id."""


@dataclass(frozen=True)
class DeliveryRow:
    """One webhook as received; `body` is None once pruned."""

    id: int
    store_id: str
    platform: str
    topic: str
    delivery_key: str
    received_at: datetime
    outcome: str
    error: str | None
    body: bytes | None
    headers: dict[str, str] | None


@dataclass(frozen=True)
class EventRow:
    """One outbox row: a Kwai event and where it stands."""

    id: int
    store_id: str
    platform: str
    business_key: str
    event_name: str
    status: str
    event: KwaiEvent
    click_source: str | None
    identifiers: dict[str, str]
    skip_reason: str | None
    value_note: str | None
    click_note: str | None
    attempts: int
    next_attempt_at: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    last_error: str | None
    last_result: int | None
    last_response: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    delivery_id: int | None


@dataclass(frozen=True)
class Claimed:
    """A row leased for sending: what a sender needs, the event still as stored."""

    id: int
    store_id: str
    attempts: int
    record: str

    @cached_property
    def event(self) -> KwaiEvent:
        # Parsed by the sender thread that asks, not by the loop that claims.
        return KwaiEvent.from_record(json.loads(self.record))


@dataclass(frozen=True)
class AcceptResult:
    """What `accept` did: the new delivery's id (None for a duplicate, or the earlier
    delivery's when a duplicate body added events to it), events created and the
    conversions they came from."""

    delivery_id: int | None
    duplicate: bool
    created: int
    added: tuple[Conversion, ...] = ()


@dataclass(frozen=True)
class Converted:
    """A received delivery once converted, as `Outbox.settle_received` records it: its
    outcome (queued, ignored or failed), the error of a failed one, its conversions."""

    delivery_id: int
    store_id: str
    platform: str
    outcome: str
    conversions: tuple[Conversion, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Finish:
    """The outcome of one attempt, as `Outbox.finish_many` records it."""

    event_id: int
    status: str  # an EventStatus: sent, pending (retry at next_attempt_at), dead or held
    now: datetime
    error: str | None = None
    response: str | None = None
    result: int | None = None
    next_attempt_at: datetime | None = None

    #: The columns an outcome writes, in the order of `values()`.
    COLUMNS = ("status", "updated_at", "next_attempt_at", "sent_at", "last_error", "last_response",
               "last_result")

    def attempt(self) -> dict[str, Any]:
        """The `event_attempts` row of this outcome."""
        return {"event_id": self.event_id, "at": self.now, "status": self.status, "result": self.result,
                "error": _cut(self.error), "response": _cut(self.response)}

    def values(self) -> tuple[Any, ...]:
        """The values this outcome writes (in COLUMNS order), hashable so that alike ones group."""
        return (self.status, self.now, self.next_attempt_at if self.status == EventStatus.PENDING else None,
                self.now if self.status == EventStatus.SENT else None, _cut(self.error), _cut(self.response),
                self.result)


def _cut(value: str | None, limit: int = RESPONSE_LIMIT) -> str | None:
    return None if value is None else value[:limit]


def _safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k.lower(): v for k, v in headers.items()
        if not any(word in k.lower() for word in _SECRET_HEADER_WORDS)
    }


def event_row(m: Mapping[str, Any]) -> EventRow:
    values = {name: m[name] for name in EventRow.__dataclass_fields__}
    values["event"] = KwaiEvent.from_record(json.loads(m["event"]))
    values["identifiers"] = json.loads(m["identifiers"]) if m["identifiers"] else {}
    return EventRow(**values)


def delivery_row(m: Mapping[str, Any]) -> DeliveryRow:
    values = {name: m[name] for name in DeliveryRow.__dataclass_fields__}
    values["headers"] = json.loads(m["headers"]) if m["headers"] else None
    return DeliveryRow(**values)


def _check_outcome(outcome: str) -> None:
    if outcome not in _OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
