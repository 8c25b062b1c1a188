"""Connect a store: make its platform send every webhook topic it needs to the bridge,
and keep it so (the worker's watch runs the same step).

`plan` is pure: given the subscriptions the platform lists, it says which to create,
which are fine and which to repair (wrong address or version, or not active);
`connect` carries it out through the store's client and reports one JSON object.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence
from urllib.parse import urlsplit

from kwai_bridge.config import StoreConfig, expected_topics
from kwai_bridge.links import CONNECTED, DISCONNECTED, Links
from kwai_bridge.platforms import Client, CredentialsRefused, PlatformError, Subscription, Transport, client_for
from kwai_bridge.runtime import webhook_url

log = logging.getLogger(__name__)


class ConnectRefused(Exception):
    """The store cannot be connected as things are (no public HTTPS URL, no credentials)."""


@dataclass(frozen=True)
class Step:
    """One thing to do for a topic: `create`, `ok`, or `fix` (with why and what)."""

    action: str
    topic: str
    subscription: Subscription | None = None
    why: str = ""


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, list[str]]:
        return {"created": self.created, "ok": self.ok, "fixed": self.fixed, "errors": self.errors}


def check_public_url(url: str) -> str:
    """The base URL platforms are to call: HTTPS on a public name, or loopback (tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost",) or _loopback(host):
        return url.rstrip("/")
    if parts.scheme != "https" or not host:
        raise ConnectRefused("KWAI_BRIDGE_PUBLIC_URL must be the bridge's public https:// address "
                             "(the platform sends webhooks there)")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ours(store: StoreConfig, sub: Subscription) -> bool:
    """Whether a subscription is the bridge's for this store (its path is the store's route)."""
    return urlsplit(sub.address).path.rstrip("/") == f"/webhooks/{store.platform}/{store.id}"


def plan(store: StoreConfig, existing: Sequence[Subscription], *, address: str,
         pinned_version: str = "") -> list[Step]:
    """What to do per needed topic, given what the platform lists."""
    steps = []
    for topic in expected_topics(store):
        found = [s for s in existing if s.topic == topic and ours(store, s)]
        exact = next((s for s in found if s.address == address), None)
        sub = exact or (found[0] if found else None)
        if sub is None:
            steps.append(Step("create", topic))
        elif sub.address != address:
            steps.append(Step("fix", topic, sub, "address"))
        elif not sub.active:
            steps.append(Step("fix", topic, sub, sub.status or "inactive"))
        elif pinned_version and sub.version != pinned_version:
            steps.append(Step("fix", topic, sub, f"version {sub.version or 'none'}"))
        else:
            steps.append(Step("ok", topic, sub))
    return steps


def connect(store: StoreConfig, client: Client, *, public_url: str) -> tuple[Report, list[Step]]:
    """Create or repair every subscription `store` needs; CredentialsRefused goes up
    (the caller marks the store disconnected), other refusals are reported per topic."""
    address = webhook_url(check_public_url(public_url), store)
    steps = plan(store, client.subscriptions(), address=address, pinned_version=getattr(client, "pinned_version", ""))
    report = Report()
    secret = store.webhook_secrets[0] if store.webhook_secrets else ""
    for step in steps:
        try:
            if step.action == "create":
                client.create(step.topic, address, secret=secret)
                report.created.append(step.topic)
            elif step.action == "fix":
                client.repair(step.subscription, step.topic, address, secret=secret)
                report.fixed.append(f"{step.topic} ({step.why})")
            else:
                report.ok.append(step.topic)
        except CredentialsRefused:
            raise
        except PlatformError as exc:
            report.errors.append(f"{step.topic}: {exc}")
    return report, steps


def disconnect(store: StoreConfig, client: Client) -> list[str]:
    """Remove the bridge's own subscriptions of the store (none other); their topics."""
    removed = []
    for sub in client.subscriptions():
        if ours(store, sub):
            client.delete(sub)
            removed.append(sub.topic)
    return removed


def connect_store(store: StoreConfig, client: Client, links: Links, *, public_url: str, now: datetime) -> Report:
    """`connect`, with the store's link recorded: connected, or disconnected with the
    platform's message when the credentials are refused."""
    try:
        report, _ = connect(store, client, public_url=public_url)
    except CredentialsRefused as exc:
        links.set_status(store, DISCONNECTED, now=now, message=str(exc))
        log.warning("store %s: the platform refused the Admin API credentials: %s", store.id, exc)
        return Report(errors=[f"credentials refused: {exc}"])
    except PlatformError as exc:
        return Report(errors=[str(exc)])
    links.set_status(store, CONNECTED, now=now)
    if links.get(store.id) is not None:
        links.watched(store.id, now=now)
    log.info("store %s connected: %s", store.id, report.as_json())
    return report




def run_connect(store: StoreConfig, *, links: Links, public_url: str, now: datetime,
                transport: Transport | None = None) -> Report:
    """`stores connect`, the API's and the console's: refused (ConnectRefused) without a
    public HTTPS URL or without credentials; otherwise `connect_store`'s report."""
    check_public_url(public_url)
    if not store.has_admin_api():
        raise ConnectRefused(f"store {store.id} has no Admin API credentials: set "
                             + ("consumer_key and consumer_secret" if store.platform == "woocommerce"
                                else "admin_api_token"))
    return connect_store(store, client_for(store, transport=transport), links, public_url=public_url, now=now)


def run_disconnect(store: StoreConfig, *, links: Links, transport: Transport | None = None) -> dict[str, list[str]]:
    """`stores disconnect`: the bridge's subscriptions removed, the link forgotten."""
    if not store.has_admin_api():
        raise ConnectRefused(f"store {store.id} has no Admin API credentials")
    try:
        removed = disconnect(store, client_for(store, transport=transport))
    except PlatformError as exc:
        return {"removed": [], "errors": [str(exc)]}
    links.forget(store.id)
    return {"removed": removed, "errors": []}


__all__ = ["ConnectRefused", "Report", "Step", "check_public_url", "connect", "connect_store", "disconnect", "ours",
           "plan", "run_connect", "run_disconnect"]
