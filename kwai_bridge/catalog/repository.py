"""The stores table: read a consistent snapshot, create, change, delete and import
stores, each change in one transaction with its audit entry and a new generation.

Every process compares the generation it loaded with `generation()` (one row, one
index lookup) and reads the stores again only when it moved (`registry`).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from adapters.signing import normalise_shop
from kwai_bridge import audit
from kwai_bridge.catalog.documents import from_document, references_of, reseal, store_fields, to_document
from kwai_bridge.config import ConfigError, StoreConfig, Stores
from kwai_bridge.db import EventStatus, events, reading, store_generation, stores
from kwai_bridge.sealing import Sealer, SealingError

#: Events that still wait to go out: a store with any of them is not deleted lightly.
WAITING = (EventStatus.PENDING, EventStatus.SENDING, EventStatus.UNATTRIBUTED, EventStatus.HELD)


class CatalogError(Exception):
    """A change to the stores that cannot be made; `status` is its HTTP status."""

    status = 400


class StoreExists(CatalogError):
    """A store with this id, or this platform and shop, exists already."""

    status = 409


class NoSuchStore(CatalogError):
    """No store has this id."""

    status = 404


class StoreBusy(CatalogError):
    """The store still has events waiting to be sent."""

    status = 409


@dataclass(frozen=True)
class StoreRecord:
    """A store with what the database adds: its version and when it changed."""

    config: StoreConfig
    version: int
    created_at: datetime
    updated_at: datetime
    refs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Every store at one generation; `broken` names stores whose secrets do not open."""

    generation: int
    stores: Stores
    broken: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportReport:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        return {k: list(getattr(self, k)) for k in ("created", "updated", "unchanged", "removed")}


def changed_fields(old: StoreConfig, new: StoreConfig) -> list[str]:
    """The names of the fields whose values differ (secrets compared, never shown)."""
    before, after = store_fields(old), store_fields(new)
    return [name for name in after if before.get(name) != after[name]]


class Catalog:
    """The stores in the database. `sealer` opens and seals secrets; a catalog without
    one (read-only commands) shows each secret as its hint and cannot write."""

    def __init__(self, engine: Engine, *, sealer: Sealer | None) -> None:
        self.engine = engine
        self.sealer = sealer

    # -- reading ---------------------------------------------------------------------
    def generation(self) -> int:
        with reading(self.engine) as conn:
            return conn.execute(select(store_generation.c.generation)).scalar() or 0

    def snapshot(self) -> Snapshot:
        """All stores and their generation, read in one transaction."""
        with reading(self.engine) as conn:
            generation = conn.execute(select(store_generation.c.generation)).scalar() or 0
            rows = conn.execute(select(stores.c.id, stores.c.document).order_by(stores.c.id)).all()
        configs, broken = [], []
        for row in rows:
            try:
                configs.append(from_document(row.document, sealer=self.sealer))
            except SealingError:
                broken.append(row.id)
        return Snapshot(generation, Stores(configs), tuple(broken))

    def records(self, ids: Iterable[str] | None = None) -> list[StoreRecord]:
        query = select(stores).order_by(stores.c.id)
        if ids is not None:
            query = query.where(stores.c.id.in_(sorted(set(ids))))
        with reading(self.engine) as conn:
            return [self._record(row) for row in conn.execute(query)]

    def get(self, store_id: str) -> StoreRecord | None:
        with reading(self.engine) as conn:
            row = conn.execute(select(stores).where(stores.c.id == store_id)).first()
        return self._record(row) if row is not None else None

    def ids(self) -> list[str]:
        with reading(self.engine) as conn:
            return list(conn.execute(select(stores.c.id).order_by(stores.c.id)).scalars())

    def _record(self, row: Any) -> StoreRecord:
        return StoreRecord(from_document(row.document, sealer=self.sealer), row.version, row.created_at,
                           row.updated_at, references_of(row.document))

    # -- changing --------------------------------------------------------------------
    def create(self, config: StoreConfig, *, actor: str, now: datetime,
               refs: Mapping[str, Any] | None = None) -> StoreRecord:
        with self._changing(now) as conn:
            self._insert(conn, config, refs, now)
            audit.record(conn, actor=actor, action="store.create", target=f"store:{config.id}", now=now,
                         detail={"platform": config.platform})
        return self.get(config.id)

    def replace(self, config: StoreConfig, *, actor: str, now: datetime,
                refs: Mapping[str, Any] | None = None) -> StoreRecord:
        """Store `config` in place of the store with its id (all fields at once)."""
        with self._changing(now, bump=False) as conn:
            current = self._locked(conn, config.id)
            changed = changed_fields(current, config)
            if changed:
                self._update(conn, config, refs, now)
                self._bump(conn, now)
                audit.record(conn, actor=actor, action="store.update", target=f"store:{config.id}", now=now,
                             detail={"fields": changed})
        return self.get(config.id)

    def delete(self, store_id: str, *, actor: str, now: datetime, force: bool = False) -> int:
        """Remove a store; refused while events wait to be sent unless `force`. Its
        events and deliveries stay (they name the store) until retention removes them.
        Return how many events were waiting."""
        with self._changing(now) as conn:
            self._locked(conn, store_id)
            waiting = self._waiting(conn, [store_id]).get(store_id, 0)
            if waiting and not force:
                raise StoreBusy(f"store {store_id!r} has {waiting} event(s) waiting to be sent: "
                                "delete with force to drop them")
            conn.execute(stores.delete().where(stores.c.id == store_id))
            audit.record(conn, actor=actor, action="store.delete", target=f"store:{store_id}", now=now,
                         detail={"waiting_events": waiting, "force": force})
        return waiting

    def import_stores(self, parsed: Sequence[tuple[StoreConfig, Mapping[str, Any]]], *, actor: str,
                      now: datetime, prune: bool = False, force: bool = False, source: str = "") -> ImportReport:
        """Create or change every store of `parsed` in one transaction (a store whose
        fields and references are the same is left as it is); with `prune`, remove the
        stores it does not name."""
        created, updated, unchanged = [], [], []
        with self._changing(now, bump=False) as conn:
            existing = {row.id: row for row in conn.execute(select(stores).with_for_update())}
            for config, refs in parsed:
                row = existing.get(config.id)
                if row is None:
                    self._insert(conn, config, refs, now)
                    created.append(config.id)
                    continue
                changed = changed_fields(self._open(row.document, config.id), config)
                if changed or references_of(row.document) != dict(refs):
                    self._update(conn, config, refs, now)
                    updated.append(config.id)
                    audit.record(conn, actor=actor, action="store.update", target=f"store:{config.id}", now=now,
                                 detail={"fields": changed, "source": source})
                else:
                    unchanged.append(config.id)
            named = {config.id for config, _ in parsed}
            removed = sorted(set(existing) - named) if prune else []
            if removed:
                busy = self._waiting(conn, removed)
                if busy and not force:
                    # As `delete` does: nothing is imported, and the message says why.
                    raise StoreBusy("events wait to be sent for " + ", ".join(
                        f"store {store_id!r} ({n})" for store_id, n in sorted(busy.items()))
                        + ": name these stores in the file, or prune with force to drop them")
                conn.execute(stores.delete().where(stores.c.id.in_(removed)))
            for store_id in created:
                audit.record(conn, actor=actor, action="store.create", target=f"store:{store_id}", now=now,
                             detail={"source": source})
            for store_id in removed:
                audit.record(conn, actor=actor, action="store.delete", target=f"store:{store_id}", now=now,
                             detail={"source": source, "pruned": True})
            if created or updated or removed:
                self._bump(conn, now)
        return ImportReport(tuple(created), tuple(updated), tuple(unchanged), tuple(removed))

    def reseal_all(self, *, actor: str, now: datetime) -> int:
        """Seal every stored secret again with the first key; return how many stores."""
        sealer = self._sealer()
        with self._changing(now, bump=False) as conn:
            rows = conn.execute(select(stores.c.id, stores.c.document).with_for_update()).all()
            for row in rows:
                conn.execute(update(stores).where(stores.c.id == row.id)
                             .values(document=reseal(row.document, sealer=sealer)))
            audit.record(conn, actor=actor, action="secrets.rotate", target="stores", now=now,
                         detail={"stores": len(rows)})
        return len(rows)

    # -- inside a change -------------------------------------------------------------
    def _sealer(self) -> Sealer:
        if self.sealer is None:
            raise SealingError("no secret keys were loaded, so stores cannot be changed")
        return self.sealer

    @contextmanager
    def _changing(self, now: datetime, *, bump: bool = True) -> Iterator[Connection]:
        """A write transaction that raises the generation as it commits (unless the
        caller bumps it itself, only when something changed). Two writers racing for one
        id or shop: the loser's insert breaks a unique constraint, reported as such."""
        self._sealer()
        try:
            with self.engine.begin() as conn:
                yield conn
                if bump:
                    self._bump(conn, now)
        except IntegrityError:
            raise StoreExists("a store with this id, or this platform and shop, was just created") from None

    @staticmethod
    def _waiting(conn: Connection, store_ids: Sequence[str]) -> dict[str, int]:
        """Events still to be sent, per store of `store_ids` that has any."""
        e = events.c
        return dict(conn.execute(select(e.store_id, func.count()).where(
            e.store_id.in_(list(store_ids)), e.status.in_(WAITING)).group_by(e.store_id)).all())

    def _bump(self, conn: Connection, now: datetime) -> None:
        g = store_generation.c
        if not conn.execute(update(store_generation).values(generation=g.generation + 1, changed_at=now)).rowcount:
            conn.execute(store_generation.insert().values(id=1, generation=1, changed_at=now))

    def _locked(self, conn: Connection, store_id: str) -> StoreConfig:
        row = conn.execute(select(stores.c.document).where(stores.c.id == store_id).with_for_update()).first()
        if row is None:
            raise NoSuchStore(f"no store {store_id!r}")
        return self._open(row.document, store_id)

    def _open(self, document: str, store_id: str) -> StoreConfig:
        try:
            return from_document(document, sealer=self._sealer())
        except SealingError as exc:
            raise CatalogError(f"store {store_id!r}: {exc}") from None

    def _insert(self, conn: Connection, config: StoreConfig, refs: Mapping[str, Any] | None, now: datetime) -> None:
        shop = normalise_shop(config.shop)
        taken = conn.execute(select(stores.c.id).where(
            (stores.c.id == config.id) | ((stores.c.platform == config.platform) & (stores.c.shop == shop)))).first()
        if taken is not None:
            what = "id" if taken.id == config.id else f"{config.platform} shop {config.shop}"
            raise StoreExists(f"store {taken.id!r} already has this {what}")
        conn.execute(stores.insert().values(
            id=config.id, platform=config.platform, shop=shop, version=1, created_at=now, updated_at=now,
            document=to_document(config, sealer=self._sealer(), refs=refs)))

    def _update(self, conn: Connection, config: StoreConfig, refs: Mapping[str, Any] | None, now: datetime) -> None:
        shop = normalise_shop(config.shop)
        taken = conn.execute(select(stores.c.id).where(
            stores.c.id != config.id, stores.c.platform == config.platform, stores.c.shop == shop)).first()
        if taken is not None:
            raise StoreExists(f"store {taken.id!r} already has {config.platform} shop {config.shop}")
        conn.execute(update(stores).where(stores.c.id == config.id).values(
            platform=config.platform, shop=shop, version=stores.c.version + 1, updated_at=now,
            document=to_document(config, sealer=self._sealer(), refs=refs)))


__all__ = [
    "Catalog", "CatalogError", "ConfigError", "ImportReport", "NoSuchStore", "Snapshot", "StoreBusy", "StoreExists",
    "StoreRecord", "changed_fields",
]
