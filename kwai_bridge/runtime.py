"""Wiring shared by the web app and the command line: settings, the stores registry,
the database and the outbox, built once per process from the environment, and the
services built over them (attribution, the webhook pipeline)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping

from kwai_bridge.attribution import Attribution, ClickStore
from kwai_bridge.audit import CLI_ACTOR
from kwai_bridge.catalog import Catalog, ImportReport, StoreRegistry, import_at_start
from kwai_bridge.config import ConfigError, StoreConfig
from kwai_bridge.sealing import SealingError, make_sealer
from kwai_bridge.settings import Settings, settings_from_env
from kwai_bridge.db import ensure_schema, make_engine, sqlite_path
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
    environ: Mapping[str, str]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, migrate: bool | None = None, create: bool = True,
                 secrets: bool = True) -> "Runtime":
        """Read the settings, open the database and load the stores.

        SQLite upgrades its own schema (`migrate=None` means: only on SQLite);
        PostgreSQL refuses an old schema and asks for `kwai-bridge migrate`. Without
        `create`, a SQLite database that does not exist yet is an error rather than a new
        empty file. Without `secrets`, no key is needed and each store's secrets are
        only their hints (for commands that read and count).
        """
        settings = settings_from_env(environ)
        if not create:
            _require_database(settings.database_url)
        engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                             pool_size=settings.database_pool_size)
        if migrate is None:
            migrate = engine.dialect.name == "sqlite"
        ensure_schema(engine, auto_migrate=migrate)
        sealer = None
        if secrets:
            try:
                sealer = make_sealer(settings.secret_keys, database_url=settings.database_url)
            except SealingError as exc:
                raise ConfigError(str(exc), field="KWAI_BRIDGE_SECRET_KEYS") from None
        catalog = Catalog(engine, sealer=sealer)
        registry = StoreRegistry(catalog, refresh_seconds=settings.stores_refresh_seconds)
        return cls(settings=settings, registry=registry, engine=engine, outbox=Outbox(engine), environ=environ)

    @property
    def catalog(self) -> Catalog:
        return self.registry.catalog

    def import_stores_file(self, *, now: datetime | None = None) -> ImportReport | None:
        """Import `KWAI_BRIDGE_STORES`, if set, as `serve`, `worker` and `migrate` do at
        start and on SIGHUP (see `catalog.import_at_start`); the registry follows."""
        if not self.settings.stores:
            return None
        report = import_at_start(self.catalog, self.settings.stores, environ=self.environ, actor=CLI_ACTOR,
                                 now=now or datetime.now(timezone.utc))
        self.registry.refresh()
        return report

    def kwai_client(self) -> KwaiClient:
        s = self.settings
        return KwaiClient(s.kwai_endpoint, connect_timeout=s.kwai_connect_timeout,
                          read_timeout=s.kwai_timeout, pool_size=max(s.dispatch_concurrency, 4))

    def webhook_urls(self, port: int | None = None) -> list[tuple[str, str, str]]:
        """(store id, platform, URL to paste) for every configured store."""
        base = self.settings.base_url(port or 8000)
        return [(s.id, s.platform, webhook_url(base, s)) for s in self.registry.stores]


def _require_database(url: str) -> None:
    """Refuse to let a command create a SQLite database by accident (run from another
    folder, say): only `migrate` and `serve` make one."""
    database = sqlite_path(url)
    if database is not None and not database.exists():
        raise ConfigError(f"no database at {os.path.abspath(database)}: KWAI_BRIDGE_DATABASE_URL chooses it "
                          "(run this command where `kwai-bridge serve` runs, or create one with "
                          "`kwai-bridge migrate`)", field="KWAI_BRIDGE_DATABASE_URL")


def webhook_url(base: str, store: StoreConfig) -> str:
    """Where `store`'s platform sends its webhooks, on the bridge reached at `base`."""
    return f"{base}/webhooks/{store.platform}/{store.id}"


def build_attribution(runtime: Runtime) -> Attribution:
    """The click store and late binding over the runtime's database and outbox."""
    return Attribution(ClickStore(runtime.engine), runtime.outbox)


def build_pipeline(runtime: Runtime) -> Pipeline:
    """The path from a webhook to the outbox, with its own attribution resolver."""
    return Pipeline(registry=runtime.registry, outbox=runtime.outbox,
                    resolver=build_attribution(runtime).resolve, privacy=Privacy(runtime.engine),
                    convert_later=runtime.settings.conversion == "worker")
