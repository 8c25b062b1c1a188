"""The database, on SQLite or PostgreSQL through one code path (SQLAlchemy Core).

- `engine`: `make_engine`, forking, the read and write transactions, the upsert's INSERT;
- `sqlite`: the SQLite engine (WAL, durable commits, the writer lock);
- `schema`: the tables, the UTC column type, event statuses and delivery outcomes;
- `migrations`: schema versions and `migrate`.
"""
from kwai_bridge.db.engine import (
    autocommit_cursor, database_errors, database_unavailable, dispose_after_fork, make_engine, reading, sqlite_path, upsert_insert, writing_cursor,
)
from kwai_bridge.db.migrations import (
    MIGRATIONS, SCHEMA_VERSION, SchemaError, ensure_schema, migrate, schema_state,
)
from kwai_bridge.db.schema import (
    CHUNK, DeliveryOutcome, EventStatus, UTCDateTime, alert_state, any_pair, api_tokens, audit_log, chunked, clicks,
    console_sessions, deliveries,
    event_attempts, event_identifiers, events, heartbeats, high_water, metadata, platform_links, platform_orders, rate_windows, schema_version,
    store_generation, stores, user_stores, users,
)
from kwai_bridge.db.sqlite import BUSY_TIMEOUT_MS, SQLITE_SYNCHRONOUS

__all__ = [
    "alert_state", "autocommit_cursor", "database_errors", "database_unavailable", "platform_links", "platform_orders",
    "BUSY_TIMEOUT_MS", "CHUNK", "MIGRATIONS", "SCHEMA_VERSION", "SQLITE_SYNCHRONOUS", "DeliveryOutcome", "EventStatus",
    "SchemaError", "UTCDateTime", "any_pair", "chunked", "clicks", "deliveries", "dispose_after_fork", "ensure_schema",
    "event_identifiers", "events", "heartbeats", "high_water", "make_engine", "metadata", "migrate",
    "rate_windows", "reading", "schema_state", "schema_version", "sqlite_path", "upsert_insert", "writing_cursor",
    "api_tokens", "audit_log", "console_sessions", "event_attempts", "store_generation", "stores", "user_stores", "users",
]
