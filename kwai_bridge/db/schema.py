"""The tables, the UTC column type, and the values the status columns may hold.

Each table has one module that writes it: `deliveries`, `events`,
`event_identifiers` and `high_water` belong to `kwai_bridge.outbox` (the admin API's
reads of them are `kwai_bridge.records`'), `clicks` to the
click store (`kwai_bridge.attribution`), `schema_version` to `kwai_bridge.db.migrations`.
"""
from __future__ import annotations

from datetime import timezone
from enum import StrEnum
from typing import Iterable, Iterator, TypeVar

from sqlalchemy import (
    BigInteger, CheckConstraint, Column, DateTime, ForeignKey, Index, Integer, LargeBinary,
    MetaData, PrimaryKeyConstraint, String, Table, Text, UniqueConstraint, and_, or_, text,
)
from sqlalchemy.types import TypeDecorator

T = TypeVar("T")


class EventStatus(StrEnum):
    """Where an outbox event stands (`events.status`)."""

    UNATTRIBUTED = "unattributed"  # no click id yet: waits for late binding, never sent without one
    SKIPPED = "skipped"  # never to be sent (a test order, a refund): kept for counting
    PENDING = "pending"  # due at `next_attempt_at`
    SENDING = "sending"  # leased to a dispatcher until `lease_until`
    SENT = "sent"
    HELD = "held"  # parked until an operator replays it (the store's credentials)
    DEAD = "dead"  # will not be retried; kept for replay


class DeliveryOutcome(StrEnum):
    """What became of a webhook delivery (`deliveries.outcome`)."""

    QUEUED = "queued"
    IGNORED = "ignored"
    FAILED = "failed"
    REPROCESSED = "reprocessed"
    PRIVACY = "privacy"  # a data-request or redaction topic, handled at once and kept as a record
    #: Stored by the webhook path, its events not made yet: the worker converts it (v9).
    RECEIVED = "received"


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on both backends; a naive datetime is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        # SQLite keeps text without an offset; every value is UTC so text order is time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _one_of(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    return CheckConstraint("%s IN (%s)" % (column, ", ".join(f"'{v}'" for v in values)), name=name)


#: The most pairs, ids or search strings one statement is given: SQLite refuses an
#: expression tree deeper than 1,000 and more than 32,766 parameters, PostgreSQL more
#: than 65,535 parameters. Callers with more (a privacy request naming 20,000 orders)
#: run one statement per chunk (`chunked`).
CHUNK = 500


def any_pair(kind: Column, value: Column, pairs: Iterable[tuple[str, str]]):
    """A condition matching rows whose (`kind`, `value`) is one of `pairs`: the shape
    both `event_identifiers` and `clicks` are keyed by.

    One term per kind (`kind = k AND value IN (...)`), so the expression stays shallow
    however many values a kind has; a kind with one value compares it with `=`.
    """
    by_kind: dict[str, list[str]] = {}
    for k, v in sorted(pairs):
        by_kind.setdefault(k, []).append(v)
    return or_(*(and_(kind == k, value == vs[0] if len(vs) == 1 else value.in_(vs)) for k, vs in by_kind.items()))


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """`items` in lists of at most `size`, in order."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

deliveries = Table(
    "deliveries", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("store_id", String, nullable=False),
    Column("platform", String, nullable=False),
    Column("topic", String, nullable=False),
    Column("delivery_key", String, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("outcome", String, nullable=False),
    Column("error", Text),
    Column("body", LargeBinary),
    Column("headers", Text),
    # The signed body's SHA-256 (v3): a captured body is accepted once per store, under
    # whatever webhook id or topic it comes back with. NULL for rows stored before v3.
    Column("body_sha256", String),
    UniqueConstraint("store_id", "delivery_key", name="uq_deliveries_store_key"),
    _one_of("outcome", DeliveryOutcome, "ck_deliveries_outcome"),
    Index("ix_deliveries_received_at", "received_at"),
    Index("ix_deliveries_store_id", "store_id", "id"),  # v5: a store's deliveries, newest first
    Index("uq_deliveries_store_body", "store_id", "body_sha256", unique=True),
    # v9: the deliveries the worker has still to convert, oldest first, whatever the size
    # of the table (a partial index: a converted delivery leaves it).
    Index("ix_deliveries_received", "id", sqlite_where=text("outcome = 'received'"),
          postgresql_where=text("outcome = 'received'")),
)

events = Table(
    "events", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("store_id", String, nullable=False),
    Column("platform", String, nullable=False),
    Column("business_key", String, nullable=False),
    Column("event_name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("event", Text, nullable=False),
    Column("click_source", String),
    Column("identifiers", Text),
    Column("skip_reason", Text),
    Column("value_note", Text),
    # Why the event has no click id although the payload offered one (v3), e.g. a landing
    # URL whose escapes WordPress removed.
    Column("click_note", Text),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("lease_until", UTCDateTime),
    Column("lease_owner", String),
    Column("last_error", Text),
    Column("last_result", Integer),
    Column("last_response", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("delivery_id", _ID, ForeignKey("deliveries.id", ondelete="SET NULL")),
    UniqueConstraint("store_id", "business_key", name="uq_events_store_business_key"),
    _one_of("status", EventStatus, "ck_events_status"),
    Index("ix_events_status_due", "status", "next_attempt_at"),
    Index("ix_events_delivery", "delivery_id"),
    Index("ix_events_store_id", "store_id", "id"),  # v4: a store's events, newest first
    # v5: pages of events of one status, newest first, of a store (it replaces v1's
    # (store_id, status), which it serves as well) and of every store.
    Index("ix_events_store_status_id", "store_id", "status", "id"),
    Index("ix_events_status_id", "status", "id"),
)

high_water = Table(
    "high_water", metadata,
    Column("store_id", String, nullable=False),
    Column("key", String, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("store_id", "key", name="pk_high_water"),
)

#: What attribution can find an event by (`Conversion.identifiers`), one row per kind,
#: so that a click can be matched to events with an index instead of scanning JSON.
event_identifiers = Table(
    "event_identifiers", metadata,
    Column("event_id", _ID, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("store_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    PrimaryKeyConstraint("event_id", "kind", name="pk_event_identifiers"),
    Index("ix_event_identifiers_lookup", "store_id", "kind", "value"),
)

#: The click store: per store and shopper identifier, the latest Kwai click id and when it
#: was clicked. `order_key` is kept with an `order_id` entry (WooCommerce's order key).
clicks = Table(
    "clicks", metadata,
    Column("store_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("value", String, nullable=False),
    Column("click_id", String, nullable=False),
    Column("clicked_at", UTCDateTime, nullable=False),
    Column("order_key", String),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("store_id", "kind", "value", name="pk_clicks"),
    Index("ix_clicks_store_clicked_at", "store_id", "clicked_at"),
)


#: Counters over fixed windows (v3), shared by every process: `scope` names what is
#: limited (clicks per client address, per store), `key` whose count it is.
rate_windows = Table(
    "rate_windows", metadata,
    Column("scope", String, nullable=False),
    Column("key", String, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("scope", "key", name="pk_rate_windows"),
)

#: The last sign of life of each long-running process (v3): a dispatcher writes its row
#: while it runs, and readiness and status read it.
heartbeats = Table(
    "heartbeats", metadata,
    Column("role", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("role", "owner", name="pk_heartbeats"),
    Index("ix_heartbeats_role_beat", "role", "beat_at"),
)


# -- v4: stores, people and their tokens, the audit trail, every send attempt ------------
#: One row per store (`kwai_bridge.catalog`): the fields of the stores file as a JSON
#: document whose secrets are sealed (`kwai_bridge.sealing`), and `shop` as the adapter
#: matches it, unique per platform.
stores = Table(
    "stores", metadata,
    Column("id", String, primary_key=True),
    Column("platform", String, nullable=False),
    Column("shop", String, nullable=False),
    Column("document", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("platform", "shop", name="uq_stores_platform_shop"),
)

#: One row: a number every change to `stores` raises in the same transaction, which
#: every process compares with the one it loaded (a cheap check instead of reading all).
store_generation = Table(
    "store_generation", metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

users = Table(
    "users", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("email", String, nullable=False),
    Column("role", String, nullable=False),
    Column("password_hash", String),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("email", name="uq_users_email"),
    CheckConstraint("role IN ('admin', 'merchant')", name="ck_users_role"),
)

#: The stores a merchant may see.
user_stores = Table(
    "user_stores", metadata,
    Column("user_id", _ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("store_id", String, nullable=False),
    PrimaryKeyConstraint("user_id", "store_id", name="pk_user_stores"),
)

#: API tokens: only a digest of each is kept, and the last characters to tell them apart.
api_tokens = Table(
    "api_tokens", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("user_id", _ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String, nullable=False),
    Column("digest", String, nullable=False),
    Column("hint", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    UniqueConstraint("digest", name="uq_api_tokens_digest"),
)

#: Who changed what: stores, users, tokens, replays. `detail` is JSON naming the fields
#: changed, never a secret's value.
audit_log = Table(
    "audit_log", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("target", String, nullable=False),
    Column("detail", Text),
    Index("ix_audit_log_at", "at"),
)

#: Every attempt to send an event, as the dispatcher recorded its outcome.
event_attempts = Table(
    "event_attempts", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("event_id", _ID, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status", String, nullable=False),
    Column("result", Integer),
    Column("error", Text),
    Column("response", Text),
    Index("ix_event_attempts_event", "event_id", "id"),
)


# -- v6: the console's sign-ins -----------------------------------------------------------
#: One row per signed-in console session: only a digest of the cookie's value is kept,
#: with the form token (CSRF) of the session; a row ends at `expires_at` or at logout.
console_sessions = Table(
    "console_sessions", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("digest", String, nullable=False),
    Column("user_id", _ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    UniqueConstraint("digest", name="uq_console_sessions_digest"),
    Index("ix_console_sessions_expires", "expires_at"),
)

#: What the alert sender last said per store and kind of alert (v7): whether it reported
#: the condition on (`firing`), since when, and when it last sent a message, so that a
#: condition is told once as it starts and once as it clears, at most once an hour.
alert_state = Table(
    "alert_state", metadata,
    Column("store_id", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("firing", Integer, nullable=False),  # 1 or 0: what the last message said
    Column("since", UTCDateTime),
    Column("last_sent_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("store_id", "kind", name="pk_alert_state"),
)


# -- v8: the platforms' Admin APIs (kwai_bridge.platforms, kwai_bridge.reconcile) ----------
#: Per store: whether its Admin API answers (`connected`, `disconnected` with the
#: platform's message), a digest of the credentials that status was found with (a
#: disconnected store is called again only once they change), and when its
#: subscriptions were last checked and its orders last reconciled.
platform_links = Table(
    "platform_links", metadata,
    Column("store_id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("message", Text),
    Column("credentials", String, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("watched_at", UTCDateTime),
    # Reconciliation: orders updated at or after `checkpoint` (less an overlap) are
    # listed next; it moves only after a page is committed.
    Column("checkpoint", UTCDateTime),
    Column("reconciled_at", UTCDateTime),
)

#: Every order reconciliation saw in a platform: whether it was paid (and on which UTC
#: day), a test order, and how many events its pass recovered (the accuracy report).
platform_orders = Table(
    "platform_orders", metadata,
    Column("store_id", String, nullable=False),
    Column("order_id", String, nullable=False),
    Column("paid_day", String),  # YYYY-MM-DD, UTC; NULL: not paid
    Column("test", Integer, nullable=False),
    Column("recovered", Integer, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("store_id", "order_id", name="pk_platform_orders"),
    Index("ix_platform_orders_day", "store_id", "paid_day"),
)
