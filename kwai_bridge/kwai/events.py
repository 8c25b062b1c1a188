"""Kwai's event model: the 32 event names and a frozen event value.

This module knows nothing of platforms or of Kwai's wire spellings (those live in
`kwai_bridge.kwai.wire`). Values are Decimal, times are aware UTC.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

EVENT_NAMES: frozenset[str] = frozenset(
    {
        "EVENT_ADD_PAYMENT_INFO", "EVENT_ADD_TO_CART", "EVENT_BUTTON_CLICK",
        "EVENT_PURCHASE", "EVENT_CONTENT_VIEW", "EVENT_DOWNLOAD",
        "EVENT_FORM_SUBMIT", "EVENT_INITIATED_CHECKOUT", "EVENT_CONTACT",
        "EVENT_PLACE_ORDER", "EVENT_SEARCH", "EVENT_COMPLETE_REGISTRATION",
        "EVENT_ADD_TO_WISHLIST", "EVENT_SUBSCRIBE", "EVENT_FIRST_DEPOSIT",
        "EVENT_CREDIT_APPROVAL", "EVENT_LOAN_APPLICATION", "EVENT_LOAN_CREDIT",
        "EVENT_LOAN_DISBURSAL", "EVENT_CREDIT_CARD_APPLICATION", "EVENT_VALUE_PRODUCE",
        "EVENT_KEY_INAPP_EVENT", "EVENT_KEY_INAPP_EVENT_1", "EVENT_KEY_INAPP_EVENT_2",
        "EVENT_KEY_INAPP_EVENT_3", "EVENT_AD_VIEW", "EVENT_AD_CLICK",
        "EVENT_PURCHASE_1_DAY", "EVENT_PURCHASE_2_DAY", "EVENT_PURCHASE_3_DAY",
        "EVENT_PURCHASE_7_DAY", "EVENT_COMPLETE_TRANSACTION",
    }
)

#: The only currencies Kwai accepts today.
CURRENCIES: frozenset[str] = frozenset({"BRL", "IDR", "USD"})

#: What `third_party` must look like: a platform's name, such as `shopify`. Which
#: platforms there are is the adapters' registry's to say, not this module's.
_THIRD_PARTY = re.compile(r"[a-z][a-z0-9_]*")


class EventError(ValueError):
    """An event that Kwai would refuse; raised before anything is sent."""


@dataclass(frozen=True)
class Content:
    """One line of an order or cart, as Kwai's `contents` wants it."""

    id: str
    quantity: int
    price: Decimal | None = None


@dataclass(frozen=True)
class KwaiEvent:
    """One conversion, ready for Kwai except for the store's pixel id and token.

    `click_id` may be None while the event waits for attribution; `validate()`
    refuses it then. `idempotency_key` is the business key that makes the event
    unique within its store (for example `order:123:EVENT_PURCHASE`).
    """

    event_name: str
    event_time: datetime
    third_party: str
    idempotency_key: str
    click_id: str | None = None
    value: Decimal | None = None
    currency: str | None = None
    contents: tuple[Content, ...] = ()
    content_type: str | None = None
    content_id: str | None = None
    content_name: str | None = None
    content_category: str | None = None
    quantity: int | None = None
    query: str | None = None
    mapping_id: str | None = None

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None:
            raise EventError("event_time must be timezone-aware")
        if self.event_time.utcoffset() != timezone.utc.utcoffset(None):
            object.__setattr__(self, "event_time", self.event_time.astimezone(timezone.utc))

    def with_click_id(self, click_id: str) -> "KwaiEvent":
        return replace(self, click_id=click_id)

    def validate(self) -> None:
        """Raise EventError for anything Kwai would refuse (credentials are checked by the wire)."""
        validate_event_name(self.event_name)
        if not self.click_id:
            raise EventError(f"{self.event_name} {self.idempotency_key}: missing click id")
        if not isinstance(self.third_party, str) or not _THIRD_PARTY.fullmatch(self.third_party):
            raise EventError(f"third_party {self.third_party!r} is not a platform's name")
        if (self.value is None) != (self.currency is None):
            raise EventError(
                f"{self.idempotency_key}: value and currency go together or not at all"
            )
        if self.currency is not None and self.currency not in CURRENCIES:
            raise EventError(
                f"{self.idempotency_key}: currency {self.currency!r} is not one Kwai accepts "
                f"({', '.join(sorted(CURRENCIES))})"
            )

    # -- internal storage form (not Kwai's wire format) --------------------------------
    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict for the outbox; `from_record` reads it back unchanged."""
        return {
            "event_name": self.event_name,
            "event_time": self.event_time.isoformat(),
            "third_party": self.third_party,
            "idempotency_key": self.idempotency_key,
            "click_id": self.click_id,
            "value": None if self.value is None else str(self.value),
            "currency": self.currency,
            "contents": [
                {"id": c.id, "quantity": c.quantity,
                 "price": None if c.price is None else str(c.price)}
                for c in self.contents
            ],
            "content_type": self.content_type,
            "content_id": self.content_id,
            "content_name": self.content_name,
            "content_category": self.content_category,
            "quantity": self.quantity,
            "query": self.query,
            "mapping_id": self.mapping_id,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "KwaiEvent":
        data = dict(record)
        data["event_time"] = datetime.fromisoformat(data["event_time"])
        data["value"] = None if data.get("value") is None else Decimal(data["value"])
        data["contents"] = tuple(
            Content(id=c["id"], quantity=c["quantity"],
                    price=None if c.get("price") is None else Decimal(c["price"]))
            for c in data.get("contents") or ()
        )
        return cls(**data)


def validate_event_name(name: str) -> None:
    if name not in EVENT_NAMES:
        raise EventError(f"unknown Kwai event name {name!r}")


__all__ = [
    "CURRENCIES", "Content", "EVENT_NAMES", "EventError", "KwaiEvent",
    "validate_event_name",
]
