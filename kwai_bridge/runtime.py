"""Wiring shared by the web app and the command line: settings, the stores registry,
the database and the outbox, built once per process from the environment, and the
services built over them (attribution, the webhook pipeline)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from kwai_bridge.attribution import Attribution, ClickStore
from kwai_bridge.config import StoreConfig, StoreRegistry
from kwai_bridge.settings import Settings, settings_from_env
from kwai_bridge.db import ensure_schema, make_engine
from kwai_bridge.outbox import Outbox
from kwai_bridge.pipeline import Pipeline
from kwai_bridge.privacy import Privacy
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

    def webhook_urls(self, port: int | None = None) -> list[tuple[str, str, str]]:
        """(store id, platform, URL to paste) for every configured store."""
        base = self.settings.base_url(port or 8000)
        return [(s.id, s.platform, webhook_url(base, s)) for s in self.registry.stores]


def webhook_url(base: str, store: StoreConfig) -> str:
    """Where `store`'s platform sends its webhooks, on the bridge reached at `base`."""
    return f"{base}/webhooks/{store.platform}/{store.id}"


def build_attribution(runtime: Runtime) -> Attribution:
    """The click store and late binding over the runtime's database and outbox."""
    return Attribution(ClickStore(runtime.engine), runtime.outbox)


def build_pipeline(runtime: Runtime) -> Pipeline:
    """The path from a webhook to the outbox, with its own attribution resolver."""
    return Pipeline(registry=runtime.registry, outbox=runtime.outbox,
                    resolver=build_attribution(runtime).resolve, privacy=Privacy(runtime.engine))
