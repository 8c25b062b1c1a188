"""Wiring shared by the web app and the command line: settings, the stores registry,
the database and the outbox, built once per process from the environment."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from kwai_bridge.config import StoreRegistry
from kwai_bridge.settings import Settings, settings_from_env
from kwai_bridge.db import ensure_schema, make_engine
from kwai_bridge.outbox import Outbox
from kwai_bridge.kwai.client import KwaiClient

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The parts of one process. Build it with `Runtime.from_env`."""

    settings: Settings
    registry: StoreRegistry
    engine: object
    outbox: Outbox

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, migrate: bool | None = None) -> "Runtime":
        """Read the settings, load the stores file and open the database.

        SQLite upgrades its own schema (`migrate=None` means: only on SQLite);
        PostgreSQL refuses an old schema and asks for `kwai-bridge migrate`.
        """
        settings = settings_from_env(environ)
        registry = StoreRegistry(settings.stores, environ=environ)
        engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        if migrate is None:
            migrate = engine.dialect.name == "sqlite"
        ensure_schema(engine, auto_migrate=migrate)
        return cls(settings=settings, registry=registry, engine=engine, outbox=Outbox(engine))

    def kwai_client(self) -> KwaiClient:
        s = self.settings
        return KwaiClient(s.kwai_endpoint, connect_timeout=s.kwai_connect_timeout,
                          read_timeout=s.kwai_timeout, pool_size=max(s.dispatch_concurrency, 4))

    def public_url(self, port: int | None = None) -> str:
        base = self.settings.public_url.rstrip("/")
        return base or f"http://localhost:{port or 8000}"

    def webhook_urls(self, port: int | None = None) -> list[tuple[str, str, str]]:
        """(store id, platform, URL to paste) for every configured store."""
        base = self.public_url(port)
        return [(s.id, s.platform, f"{base}/webhooks/{s.platform}/{s.id}") for s in self.registry.stores]
