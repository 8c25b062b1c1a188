"""Withdrawing an order's events when it is cancelled or refunded (adapters.later): each
event of a withdrawn business key that was not sent (unattributed, pending, held or dead)
becomes `skipped` with the reason; one already sent stays sent and is counted, since Kwai
has no event to take it back; one in flight (`sending`) is left to its dispatcher.

Run inside Outbox.accept's write transaction, on its driver cursor, so that a
cancellation and its delivery are stored together or not at all.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Sequence

from adapters.values import Conversion
from kwai_bridge.db import EventStatus, events

log = logging.getLogger(__name__)

UNSENT = (EventStatus.UNATTRIBUTED, EventStatus.PENDING, EventStatus.HELD, EventStatus.DEAD)


class Withdrawals:
    """The two statements of a withdrawal, written once for the engine's driver."""

    def __init__(self, dialect: Any) -> None:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        unsent = ", ".join(f"'{status.value}'" for status in UNSENT)
        self._skip = (f"UPDATE events SET status = '{EventStatus.SKIPPED.value}', skip_reason = {mark}, "
                      f"next_attempt_at = NULL, updated_at = {mark} "
                      f"WHERE store_id = {mark} AND business_key = {mark} AND status IN ({unsent})")
        self._sent = (f"SELECT count(*) FROM events WHERE store_id = {mark} AND business_key = {mark} "
                      f"AND status = '{EventStatus.SENT.value}'")
        self._time = events.c.updated_at.type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)

    def apply(self, cursor: Any, store_id: str, conversions: Sequence[Conversion], *, now: datetime) -> tuple[int, int]:
        """Withdraw the events `conversions` marked `withdraw`; return (skipped, already sent)."""
        skipped = sent = 0
        for conversion in conversions:
            if not conversion.withdraw:
                continue
            key = conversion.event.idempotency_key
            cursor.execute(self._skip, (conversion.skip_reason, self._time(now), store_id, key))
            skipped += max(cursor.rowcount, 0)
            cursor.execute(self._sent, (store_id, key))
            sent += cursor.fetchone()[0]
        if skipped or sent:
            log.info("store %s: order withdrawn: %d unsent event(s) skipped, %d already sent and counted",
                     store_id, skipped, sent)
        return skipped, sent


__all__ = ["UNSENT", "Withdrawals"]
