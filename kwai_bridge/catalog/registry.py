"""The stores a process works with: a snapshot of the catalog that follows the database.

Every web worker and dispatcher holds one. Reading `stores` costs nothing most of the
time; at most every `refresh_seconds` it compares the database's generation with its
own (one row) and, when it moved, reads every store again in one transaction and swaps
the whole set at once, so a store being changed is seen before or after, never gone.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from kwai_bridge.catalog.repository import Catalog, Snapshot
from kwai_bridge.config import StoreConfig, Stores

log = logging.getLogger(__name__)

#: How often a lookup of an unknown store may look at the database again: a stranger
#: posting to made-up store ids costs at most this one small query per interval.
MISS_RECHECK_SECONDS = 0.5


class StoreRegistry:
    """The current stores and why the last refresh failed, if it did."""

    def __init__(self, catalog: Catalog, *, refresh_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.catalog = catalog
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._lock = threading.Lock()
        # one tuple, swapped whole, so readers never see new stores with an old error
        self._state: tuple[Snapshot, str | None] = (Snapshot(-1, Stores()), "stores not loaded yet")
        self._checked_at: float | None = None
        self._missed_at: float | None = None
        self.refresh()

    @property
    def stores(self) -> Stores:
        checked = self._checked_at
        if checked is None or self.clock() - checked >= self.refresh_seconds:
            self.refresh()
        return self._state[0].stores

    def get(self, store_id: str) -> StoreConfig | None:
        """The store with this id. A miss looks at the database once more (at most every
        `MISS_RECHECK_SECONDS`), waiting for a refresh under way, so that a store created a
        moment ago is found at once and not answered 404 or held as unknown."""
        store = self.stores.get(store_id)
        if store is None and self._recheck_miss():
            store = self._state[0].stores.get(store_id)
        return store

    def find_by_shop(self, platform: str, shop_header: str | None) -> StoreConfig | None:
        """The store a webhook's shop header names (see `get` for a miss)."""
        store = self.stores.find_by_shop(platform, shop_header)
        if store is None and shop_header and self._recheck_miss():
            store = self._state[0].stores.find_by_shop(platform, shop_header)
        return store

    def _recheck_miss(self) -> bool:
        now = self.clock()
        if self._missed_at is not None and now - self._missed_at < MISS_RECHECK_SECONDS:
            return False
        self._missed_at = now
        self.refresh(wait=True)
        return True

    @property
    def generation(self) -> int:
        return self._state[0].generation

    @property
    def error(self) -> str | None:
        return self._state[1]

    def refresh(self, *, wait: bool = False) -> bool:
        """Read the stores again if the database's generation moved; True when it did.
        A caller that finds another thread refreshing goes on with the current set, or
        with `wait`, waits for that refresh and checks again."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            self._checked_at = self.clock()
            current = self._state[0]
            try:
                if self.catalog.generation() == current.generation:
                    return False
                snapshot = self.catalog.snapshot()
            except SQLAlchemyError as exc:
                log.error("stores not refreshed from the database, keeping %d: %s",
                          len(current.stores), exc.__class__.__name__)
                self._state = (current, f"the database could not be read ({exc.__class__.__name__})")
                return False
            error = None
            if snapshot.broken:
                # Keep what this process had of those stores rather than drop them.
                kept = [s for s in current.stores if s.id in snapshot.broken]
                error = (f"store(s) {', '.join(snapshot.broken)}: their secrets do not open with the "
                         "configured keys (KWAI_BRIDGE_SECRET_KEYS)")
                log.error("%s; %s", error, "keeping the previous version" if kept else "not served")
                snapshot = Snapshot(snapshot.generation, Stores([*snapshot.stores, *kept]), snapshot.broken)
            self._state = (snapshot, error)
            log.info("stores at generation %d: %d store(s)", snapshot.generation, len(snapshot.stores))
            return True
        finally:
            self._lock.release()


__all__ = ["StoreRegistry"]
