"""The command group every `kwai-bridge` command hangs on, and what the commands share:
the runtime built from the environment, dates given on the command line, the clock."""
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
