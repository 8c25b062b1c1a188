"""The stores file as an import format: read it whole, check every store, then write
them all in one transaction, or nothing."""
from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Mapping

from kwai_bridge.catalog.repository import Catalog, CatalogError, ImportReport, StoreExists
from kwai_bridge.config import ConfigError, parse_entries, read_stores_file

log = logging.getLogger(__name__)


def import_file(catalog: Catalog, path: str | os.PathLike[str], *, environ: Mapping[str, str], actor: str,
                now: datetime, prune: bool = False, force: bool = False) -> ImportReport:
    """Import the stores file at `path`; raise ConfigError (every problem, one a line)
    and change nothing if any store is wrong."""
    shown = os.fspath(path)
    parsed = parse_entries(read_stores_file(path), environ=environ, source=shown)
    try:
        try:
            report = catalog.import_stores(parsed, actor=actor, now=now, prune=prune, force=force, source=shown)
        except StoreExists:
            # Another process created the same store between our read and our write: the
            # machines of one deployment start together with the same file. Compared again
            # with what that process wrote, an identical store is left alone.
            log.info("%s: another process was importing the same stores; comparing again", shown)
            report = catalog.import_stores(parsed, actor=actor, now=now, prune=prune, force=force, source=shown)
    except CatalogError as exc:
        raise ConfigError(f"{shown}: {exc}") from None
    if report.created or report.updated or report.removed:
        log.info("stores imported from %s: %s", shown,
                 ", ".join(f"{k} {', '.join(v)}" for k, v in report.as_json().items() if v and k != "unchanged"))
    return report


def import_at_start(catalog: Catalog, path: str, *, environ: Mapping[str, str], actor: str,
                    now: datetime) -> ImportReport | None:
    """What `migrate`, `serve` and `worker` do with `KWAI_BRIDGE_STORES` as they start
    (and `serve` and `worker` on SIGHUP): import it; when it is wrong, log the problems
    at ERROR and go on with the stores the database has, or, when it has none, raise."""
    try:
        return import_file(catalog, path, environ=environ, actor=actor, now=now)
    except ConfigError as exc:
        if not catalog.ids():
            raise ConfigError(f"no stores in the database, and the stores file cannot be imported:\n{exc}") from None
        log.error("stores file not imported, the database's stores are kept as they are:\n%s", exc)
        return None


__all__ = ["import_at_start", "import_file"]
