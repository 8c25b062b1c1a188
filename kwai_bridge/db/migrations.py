"""Versioned migrations: the schema version a database is at, and the steps to bring
it up to the one this release needs."""
from __future__ import annotations

import json
import logging
from typing import Callable

from sqlalchemy import exists, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from kwai_bridge.db.engine import reading, upsert_insert
from kwai_bridge.db.schema import (
    DeliveryOutcome, alert_state, api_tokens, audit_log, clicks, console_sessions, deliveries, event_attempts, event_identifiers, events, heartbeats, high_water,
    metadata, platform_links, platform_orders, rate_windows, schema_version, store_generation, stores, user_stores, users,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 10
#: Events read per batch when migration 2 fills `event_identifiers`.
_BACKFILL_BATCH = 500
# Any constant will do; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x6B776169  # "kwai"


class SchemaError(Exception):
    """The database schema is not the one this release needs."""


def _v1(conn: Connection) -> None:
    # Version 1 creates the first release's tables as `metadata` describes them today: on
    # a new database they come with the columns later versions added, and those
    # versions' steps find them there and add nothing (each step checks first).
    metadata.create_all(conn, tables=[deliveries, events, high_water], checkfirst=True)


def _v2(conn: Connection) -> None:
    # The click store and the identifier index, then the index filled from the events
    # already stored (their identifiers JSON), in batches; rows already there are kept.
    metadata.create_all(conn, tables=[event_identifiers, clicks], checkfirst=True)
    insert = upsert_insert(conn.dialect)
    e, ei = events.c, event_identifiers.c
    last = 0
    while True:
        rows = conn.execute(
            select(e.id, e.store_id, e.identifiers)
            .where(e.id > last, e.identifiers.is_not(None), ~exists().where(ei.event_id == e.id))
            .order_by(e.id).limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        values = [
            {"event_id": row.id, "store_id": row.store_id, "kind": kind, "value": value}
            for row in rows for kind, value in _identifier_items(row.identifiers)
        ]
        if values:
            conn.execute(insert(event_identifiers).values(values).on_conflict_do_nothing())
        last = rows[-1].id


def _v3(conn: Connection) -> None:
    # The signed body's hash (deduplication by body), why an event's offered click id was
    # not used, the shared rate counters and the processes' heartbeats.
    _add_column(conn, deliveries.c.body_sha256)
    _add_column(conn, events.c.click_note)
    for index in deliveries.indexes:
        if index.name == "uq_deliveries_store_body":
            index.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=[rate_windows, heartbeats], checkfirst=True)


def _v4(conn: Connection) -> None:
    # Stores move from the file into the database (the file becomes an import format),
    # with the users and API tokens of the admin API, its audit trail, and a row per
    # send attempt. Events listed newest first per store need (store_id, id).
    metadata.create_all(conn, tables=[stores, store_generation, users, user_stores, api_tokens, audit_log,
                                      event_attempts], checkfirst=True)
    for index in events.indexes:
        if index.name == "ix_events_store_id":
            index.create(conn, checkfirst=True)


#: Indexes version 5 adds for the admin API's pages (`kwai_bridge.records`).
_V5_INDEXES = ("ix_events_store_status_id", "ix_events_status_id", "ix_deliveries_store_id")


def _v5(conn: Connection) -> None:
    # Pages of events by status and of a store's deliveries, newest first, read through
    # an index. (store_id, status, id) serves whatever (store_id, status) served, so
    # that one goes: a webhook's insert maintains one index more than in v4, not two.
    for table in (events, deliveries):
        for index in table.indexes:
            if index.name in _V5_INDEXES:
                index.create(conn, checkfirst=True)
    conn.execute(text("DROP INDEX IF EXISTS ix_events_store_status"))


def _v6(conn: Connection) -> None:
    # The console's sessions, kept server-side so that logging out (or an operator
    # deleting a row) ends one at once.
    metadata.create_all(conn, tables=[console_sessions], checkfirst=True)


def _v7(conn: Connection) -> None:
    # What the alert sender last said per store and kind (kwai_bridge.alerting).
    metadata.create_all(conn, tables=[alert_state], checkfirst=True)


def _v8(conn: Connection) -> None:
    # The platforms' Admin APIs: each store's link (status, checkpoint) and the orders
    # reconciliation saw (kwai_bridge.platforms, kwai_bridge.reconcile).
    metadata.create_all(conn, tables=[platform_links, platform_orders], checkfirst=True)


def _v9(conn: Connection) -> None:
    # The webhook path may store a delivery as `received` and leave its conversion to the
    # worker: the outcome check admits the new value, and a partial index finds those
    # deliveries. The check only widens, so the rows already stored satisfy it.
    outcomes = ", ".join(f"'{v}'" for v in DeliveryOutcome)
    earlier = ", ".join(f"'{v}'" for v in DeliveryOutcome if v != DeliveryOutcome.RECEIVED)
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS ck_deliveries_outcome, "
                          f"ADD CONSTRAINT ck_deliveries_outcome CHECK (outcome IN ({outcomes}))"))
    else:
        # SQLite alters no constraint: the table's definition is edited in place, the way
        # SQLite's documentation gives for changing a CHECK that every row satisfies
        # (sqlite.org/lang_altertable.html), and the schema version bumped so that every
        # connection reads it again.
        old, new = f"outcome IN ({earlier})", f"outcome IN ({outcomes})"
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'deliveries'").scalar()
        if old in sql and new not in sql:
            version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
            conn.exec_driver_sql("PRAGMA writable_schema = ON")
            try:
                conn.execute(text("UPDATE sqlite_schema SET sql = :sql WHERE type = 'table' AND name = 'deliveries'"),
                             {"sql": sql.replace(old, new)})
                conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
            finally:
                conn.exec_driver_sql("PRAGMA writable_schema = OFF")
    for index in deliveries.indexes:
        if index.name == "ix_deliveries_received":
            index.create(conn, checkfirst=True)


def _v10(conn: Connection) -> None:
    # PostgreSQL compresses a stored body (some 11 KB for an order) with pglz unless told
    # otherwise: measured, that took 120 us of the server's CPU per webhook, a quarter of
    # what storing it costs. lz4 compresses it in a tenth of that (to 4.3 KB a body
    # against pglz's 3.3 KB), where the server is built with it (PostgreSQL 14 and later:
    # the setting's allowed values say). Bodies stored before keep their compression.
    if conn.dialect.name == "postgresql" and postgres_has_lz4(conn):
        conn.execute(text("ALTER TABLE deliveries ALTER COLUMN body SET COMPRESSION lz4"))


def postgres_has_lz4(conn: Connection) -> bool:
    """Whether this PostgreSQL server compresses values with lz4 when told to."""
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")).scalar())


def _add_column(conn: Connection, column) -> None:
    """ALTER TABLE ... ADD COLUMN, unless the table has it already (a new database does)."""
    table = column.table.name
    if column.name in {c["name"] for c in inspect(conn).get_columns(table)}:
        return
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f'ALTER TABLE {table} ADD COLUMN {column.name} {kind}'))


def _identifier_items(raw: str | None) -> list[tuple[str, str]]:
    """(kind, value) pairs of an events.identifiers JSON text; anything else is skipped."""
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return []
    if not isinstance(found, dict):
        return []
    return [(k, v) for k, v in found.items() if isinstance(k, str) and isinstance(v, str) and v]


#: Append-only: (version, function). Each function must be safe to run on a database
#: that already has its changes (`checkfirst`, `IF NOT EXISTS`).
MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = (
    (1, _v1), (2, _v2), (3, _v3), (4, _v4), (5, _v5), (6, _v6), (7, _v7), (8, _v8),
    (9, _v9), (10, _v10),
)


def _current(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    return conn.execute(select(schema_version.c.version)).scalar()


def schema_state(engine: Engine) -> tuple[int | None, int]:
    """Return (the database's schema version or None when empty, the version this release needs)."""
    with reading(engine) as conn:
        return _current(conn), SCHEMA_VERSION


def migrate(engine: Engine) -> int:
    """Bring the schema up to SCHEMA_VERSION in one transaction and return the version."""
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE serialises migrators
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        current = _current(conn)
        if current is None:
            schema_version.create(conn, checkfirst=True)
        elif current > SCHEMA_VERSION:
            raise SchemaError(
                f"database schema is at version {current}, newer than this release "
                f"(version {SCHEMA_VERSION}): upgrade kwai-bridge"
            )
        start = current or 0
        for version, step in MIGRATIONS:
            if version > start:
                log.info("migrating the database schema to version %d", version)
                step(conn)
        if current is None:
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif current < SCHEMA_VERSION:
            conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Migrate when allowed (SQLite), else refuse to run on a schema that is not current."""
    if auto_migrate:
        migrate(engine)
        return
    current, latest = schema_state(engine)
    if current is None or current < latest:
        shown = "0 (empty)" if current is None else str(current)
        raise SchemaError(
            f"database schema is at version {shown}, this release needs {latest}: "
            "run `kwai-bridge migrate`"
        )
    if current > latest:
        raise SchemaError(
            f"database schema is at version {current}, newer than this release "
            f"(version {latest}): upgrade kwai-bridge"
        )

