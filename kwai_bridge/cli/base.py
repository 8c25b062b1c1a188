"""The command group every `kwai-bridge` command hangs on, and what the commands share:
the runtime built from the environment, the `--store` option, dates given on the command
line, the clock."""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone

import click

from kwai_bridge import LOG_FORMAT
from kwai_bridge.config import ConfigError
from kwai_bridge.db import SchemaError
from kwai_bridge.runtime import Runtime
from kwai_bridge.settings import settings_from_env

log = logging.getLogger("kwai_bridge")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _setup_logging() -> None:
    try:
        level = settings_from_env(os.environ).log_level
    except ConfigError:
        # Logging comes first, before any command (even --help); a command that reads
        # the settings reports what is wrong with them.
        level = "INFO"
    logging.basicConfig(level=level, format=LOG_FORMAT)


def load_runtime(*, migrate: bool | None = None, create: bool = True, secrets: bool = True) -> Runtime:
    """The runtime from the environment (see `Runtime.from_env`); a problem is the
    command's error message."""
    try:
        return Runtime.from_env(os.environ, migrate=migrate, create=create, secrets=secrets)
    except (ConfigError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from exc


def command_runtime(*, secrets: bool = False) -> Runtime:
    """The runtime of the running command, opened once per command and never creating a
    database: only `migrate` and `serve` make one. Without `secrets`, no key is needed."""
    cache = click.get_current_context().find_root().meta
    key = f"kwai_bridge.runtime.secrets={secrets}"
    if key not in cache:
        cache[key] = load_runtime(create=False, secrets=secrets)
    return cache[key]


#: At most this many store ids in the message that refuses an unknown one.
_KNOWN_SHOWN = 20


def _known_store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a store id the bridge knows nothing of: not in the database, and no event of
    it left in the outbox (a removed store's events stay until retention removes them)."""
    if value is None:
        return None
    runtime = command_runtime()
    known = runtime.catalog.ids()
    if value in known or any(runtime.outbox.counts(store_id=value).values()):
        return value
    shown = ", ".join(known[:_KNOWN_SHOWN]) or "none yet (`kwai-bridge stores import FILE` adds them)"
    if len(known) > _KNOWN_SHOWN:
        shown += f", ... ({len(known)} in all: `kwai-bridge stores list`)"
    raise click.UsageError(f"no store {value!r}; known: {shown}", ctx=ctx)


def store_option(*, required: bool = False, help: str | None = None):  # noqa: A002 (click's name)
    """`--store ID` (as `store_id`), refused with exit code 2 when no such store exists."""
    return click.option("--store", "store_id", required=required, callback=_known_store, help=help)


def import_at_start(runtime: Runtime, *, on_signal: bool = False) -> None:
    """Import KWAI_BRIDGE_STORES as a command starts (or on SIGHUP); refuse to start when
    it cannot be imported and the database has no store."""
    try:
        runtime.import_stores_file()
    except ConfigError as exc:
        if on_signal:  # the database has stores, or this process would not be running
            log.error("stores file not imported: %s", exc)
            return
        raise click.ClickException(str(exc)) from exc


def parse_since(value: str | None) -> datetime:
    if not value:
        return datetime(1970, 1, 1, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date (2026-11-26 or 2026-11-26T10:00:00Z)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@click.group()
def main() -> None:
    """kwai-bridge: store webhooks in, Kwai conversion events out."""
    _setup_logging()
