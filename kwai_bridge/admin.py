"""What an admin or a merchant may do to stores and events, for every client alike: the
JSON API (`kwai_bridge.web.api`) and the console (`kwai_bridge.web.console`) both call
`Admin`, so that a store is checked, merged, created, replayed and tested one way.

Everything is seen through a `Principal`: a store or event the caller may not see is
answered exactly as one that does not exist (NotFound).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from kwai_bridge.accounts import Principal
from kwai_bridge.catalog import StoreRecord, store_fields
from kwai_bridge.config import ConfigErrors, StoreConfig, check_store
from kwai_bridge.kwai.events import EventError
from kwai_bridge.records import Records
from kwai_bridge.runtime import Runtime
from kwai_bridge.testevent import TestEventResult, send_test_event


class AdminError(Exception):
    """A request refused; `status` is its HTTP status."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(AdminError):
    """Only an admin may do this."""

    status = 403


class NotFound(AdminError):
    """No such thing, or not one the caller may see."""

    status = 404


class Conflict(AdminError):
    """The request cannot be done as the bridge is set up; the message says what is missing."""

    status = 409


class Invalid(AdminError):
    """Fields that do not validate: `errors` maps each field to its messages."""

    status = 400

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__("invalid request")
        self.errors = {k: list(v) for k, v in errors.items()}


def store_errors(exc: ConfigErrors) -> Invalid:
    """check_store's problems as `{field: [message]}`, without the "store "x": field:" prefix."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors:
        name = error.field or "_schema"
        text = str(error)
        marker = f": {name}: "
        errors.setdefault(name, []).append(text.split(marker, 1)[1] if marker in text else text)
    return Invalid(errors)


def checked(entry: Mapping[str, Any]):
    """The store `entry` describes, checked as a stores file is; Invalid naming each field."""
    try:
        return check_store(entry)
    except ConfigErrors as exc:
        raise store_errors(exc) from None


class Admin:
    """One caller's view of the stores and events of `runtime`, at `now`."""

    def __init__(self, runtime: Runtime, principal: Principal, *, now: datetime) -> None:
        self.runtime = runtime
        self.principal = principal
        self.now = now
        self.records = Records(runtime.engine)

    @property
    def actor(self) -> str:
        """The audit trail's name for the caller."""
        return self.principal.email

    def require_admin(self) -> Principal:
        if not self.principal.is_admin:
            raise Forbidden("only an admin may do this")
        return self.principal

    # -- stores ----------------------------------------------------------------------
    def visible_store(self, store_id: str) -> str:
        """`store_id` if it exists and the caller may see it; else NotFound alike."""
        if not self.principal.can_see(store_id) or self.runtime.catalog.get(store_id) is None:
            raise NotFound("no such store")
        return store_id

    def stores(self) -> list[StoreRecord]:
        return self.runtime.catalog.records(self.principal.visible)

    def store(self, store_id: str) -> StoreRecord:
        record = self.runtime.catalog.get(self.visible_store(store_id))
        if record is None:  # deleted between the two reads
            raise NotFound("no such store")
        return record

    def create(self, entry: Mapping[str, Any]) -> StoreRecord:
        self.require_admin()
        config = checked(entry)
        record = self.runtime.catalog.create(config, actor=self.actor, now=self.now)
        self.runtime.registry.refresh()
        return record

    def change(self, store_id: str, changes: Mapping[str, Any]) -> StoreRecord:
        """The given fields replace the store's; the whole is checked again."""
        self.require_admin()
        if changes.get("id", store_id) != store_id:
            raise Invalid({"id": ["a store's id cannot change (create another store)"]})
        record = self.store(store_id)
        config = checked({**store_fields(record.config, secrets="clear"), **changes})
        # a secret given here replaces the `${NAME}` it was imported from
        refs = {k: v for k, v in record.refs.items() if k not in changes}
        changed = self.runtime.catalog.replace(config, actor=self.actor, now=self.now, refs=refs)
        self.runtime.registry.refresh()
        return changed

    def delete(self, store_id: str, *, force: bool) -> int:
        self.require_admin()
        waiting = self.runtime.catalog.delete(self.visible_store(store_id), actor=self.actor, now=self.now,
                                              force=force)
        self.runtime.registry.refresh()
        return waiting

    def health(self, store_id: str) -> dict:
        return self.records.store_health(self.visible_store(store_id), now=self.now)

    def _served(self, store_id: str) -> StoreConfig:
        store = self.runtime.registry.get(self.visible_store(store_id))  # a miss looks at the database again
        if store is None:
            raise NotFound(f"no such store: {self.runtime.registry.error or 'not loaded yet'}")
        return store

    def connect(self, store_id: str) -> dict[str, list[str]]:
        """Create or repair the store's webhook subscriptions on its platform (admins only);
        `{"created", "ok", "fixed", "errors"}`. Refused (409) without a public HTTPS
        KWAI_BRIDGE_PUBLIC_URL or without the store's Admin API credentials."""
        from kwai_bridge.connect import ConnectRefused, run_connect
        from kwai_bridge.links import Links

        self.require_admin()
        store = self._served(store_id)
        try:
            report = run_connect(store, links=Links(self.runtime.engine), public_url=self.runtime.settings.public_url,
                                 now=self.now)
        except ConnectRefused as exc:
            raise Conflict(str(exc)) from None
        return report.as_json()

    def accuracy(self, store_id: str, *, since: datetime) -> list[dict[str, Any]]:
        """The accuracy report of one store from the day of `since` (kwai_bridge.accuracy)."""
        from kwai_bridge.accuracy import accuracy

        store = self._served(store_id)
        return [row.as_json() for row in accuracy(self.runtime.engine, [store], since=since, now=self.now)]

    def test_event(self, store_id: str, *, clickid: str, event_name: str) -> TestEventResult:
        """Send one event to Kwai now, with trackFlag true; what Kwai said."""
        store = self.runtime.registry.get(self.visible_store(store_id))  # a miss looks at the database again
        if store is None:
            raise NotFound(f"no such store: {self.runtime.registry.error or 'not loaded yet'}")
        client = self.runtime.kwai_client()
        try:
            return send_test_event(client, store, clickid=clickid, event_name=event_name, now=self.now)
        except EventError as exc:
            raise Invalid({"_schema": [str(exc)]}) from None
        finally:
            client.close()

    # -- events ----------------------------------------------------------------------
    def event(self, event_id: int) -> dict:
        found = self.records.event(event_id, stores=self.principal.visible, registry=self.runtime.registry)
        if found is None:
            raise NotFound("no such event")
        return found

    def replay(self, **what: Any) -> int:
        """Put the caller's matching events back to pending, due now, audited in the same
        transaction; `event_id` names one event (NotFound when not the caller's)."""
        if what.get("event_id") is not None:
            self.event(what["event_id"])
        if what.get("store_id") is not None:
            self.visible_store(what["store_id"])
        return self.records.replay(now=self.now, stores=self.principal.visible, actor=self.actor, **what)


__all__ = ["Admin", "AdminError", "Forbidden", "Invalid", "NotFound", "checked", "store_errors"]
