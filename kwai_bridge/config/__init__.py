"""Configuration: the stores file (one table per shop) and the stores it holds.

The stores file is TOML read with `tomllib` (`stores_file`); the stores are values
(`stores`); StoreRegistry holds the current ones and reloads them. Process settings
(`KWAI_BRIDGE_*` variables) are `kwai_bridge.settings`. Every problem raises ConfigError
with a sentence naming the store and field (or the variable), never a value that could
be a secret.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Mapping

from kwai_bridge.config.stores import ConfigError, StoreConfig, Stores
from kwai_bridge.config.stores_file import EXAMPLE_FILE, PLATFORMS, load_stores, parse_stores

log = logging.getLogger(__name__)


class StoreRegistry:
    """The current Stores and why the last load failed; `reload()` swaps them safely."""

    def __init__(self, path: str | os.PathLike[str], *, environ: Mapping[str, str],
                 load: bool = True):
        self.path = os.fspath(path)
        self._environ = environ
        self._lock = threading.RLock()  # re-entrant: SIGHUP may land during a reload
        # one tuple, swapped whole, so readers never see new stores with an old error
        self._state: tuple[Stores, str | None] = (
            Stores(), f"stores not loaded yet from {self.path}")
        if load:
            self.reload()

    @property
    def stores(self) -> Stores:
        return self._state[0]

    @property
    def error(self) -> str | None:
        return self._state[1]

    def reload(self) -> bool:
        """Load the file again; on failure keep the previous stores and set `error`."""
        with self._lock:
            try:
                stores = load_stores(self.path, environ=self._environ)
            except ConfigError as exc:
                previous = self._state[0]
                self._state = (previous, str(exc))
                log.error("stores not reloaded, keeping %d store(s): %s", len(previous), exc)
                return False
            self._state = (stores, None)
        log.info("loaded %d store(s) from %s: %s", len(stores), self.path,
                 ", ".join(s.id for s in stores))
        return True

    def install_sighup(self) -> Any:
        """Reload on SIGHUP; return the previous handler (None when not on the main thread)."""
        if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
            return None  # signal.signal works only on the main thread
        return signal.signal(signal.SIGHUP, lambda signum, frame: self.reload())


__all__ = [
    "EXAMPLE_FILE", "PLATFORMS", "ConfigError", "StoreConfig", "StoreRegistry", "Stores",
    "load_stores", "parse_stores",
]
