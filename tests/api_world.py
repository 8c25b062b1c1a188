"""A small world for the admin API's tests: two stores (acme on Shopify, globex on
WooCommerce) with events and deliveries each, an admin, a merchant of each store, a
revoked token, and the app over a real database with the fake Kwai behind it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from adapters.values import Conversion
from kwai_bridge.accounts import Accounts
from kwai_bridge.db import events, make_engine, migrate
from kwai_bridge.kwai.events import KwaiEvent
from server import create_app
from tests.clock import Clock
from tests.serving import store_entry, write_stores

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
#: What only each store's answers may hold: its id, shop, pixel and order keys.
MARKS = {
    "acme": ("acme", "acme.myshopify.com", "pixel-shopify", "order:acme-"),
    "globex": ("globex", "woo.example", "pixel-woocommerce", "order:globex-"),
}


@dataclass
class World:
    client: Any
    app: Any
    tokens: dict[str, str | None]  # role -> token: none, revoked, admin, own (acme), other (globex)
    event_ids: dict[str, list[int]]
    delivery_ids: dict[str, int]
    clock: Clock

    def call(self, method: str, path: str, *, role: str = "admin", body: Any = None, **kwargs):
        token = self.tokens[role]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers,
                                json=body, **kwargs)

    @property
    def runtime(self):
        return self.app.extensions["kwai_bridge.runtime"]


def build_world(tmp_path: Path, database_url: str, *, kwai_url: str = "http://127.0.0.1:9/log/common") -> World:
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"),
                                                      store_entry("woocommerce", "globex")])
    clock = Clock(NOW)
    migrate(make_engine(database_url))  # PostgreSQL is migrated by `kwai-bridge migrate`, not by the app
    app = create_app({"DATABASE_URL": database_url, "STORES": str(stores), "KWAI_ENDPOINT": kwai_url}, clock=clock)
    runtime = app.extensions["kwai_bridge.runtime"]
    event_ids, delivery_ids = {}, {}
    for store_id, platform in (("acme", "shopify"), ("globex", "woocommerce")):
        result = runtime.outbox.accept(
            store_id=store_id, platform=platform, topic="orders/paid", delivery_key=f"{store_id}-d1",
            received_at=NOW - timedelta(minutes=5), body=b"{}", headers={"X-Test": store_id},
            conversions=[Conversion(event=KwaiEvent(
                event_name="EVENT_PURCHASE", event_time=NOW, third_party=platform,
                idempotency_key=f"order:{store_id}-{n}:EVENT_PURCHASE", click_id=f"clk-{store_id}-{n}"),
                click_source="attribute") for n in range(3)])
        delivery_ids[store_id] = result.delivery_id
        event_ids[store_id] = sorted(e.id for e in runtime.outbox.list_events(store_id=store_id))
        with runtime.engine.begin() as conn:  # one dead, one held, one waiting out its back-off
            for event_id, status in zip(event_ids[store_id], ("dead", "held")):
                conn.execute(update(events).where(events.c.id == event_id).values(
                    status=status, last_result=10006, last_error="token refused"))
            conn.execute(update(events).where(events.c.id == event_ids[store_id][2]).values(
                attempts=1, next_attempt_at=NOW + timedelta(hours=2), last_error="HTTP 503"))
    accounts = Accounts(runtime.engine)
    known = runtime.catalog.ids()
    tokens: dict[str, str | None] = {"none": None}
    for role, email, stores_of in (("admin", "ops@agency.example", ()), ("own", "ann@acme.example", ("acme",)),
                                   ("other", "gus@globex.example", ("globex",)),
                                   ("revoked", "rev@agency.example", ())):
        accounts.add_user(email, role="merchant" if stores_of else "admin", stores=stores_of, known=known,
                          actor="test", now=NOW)
        tokens[role], token = accounts.create_token(email, actor="test", now=NOW)
        if role == "revoked":
            accounts.revoke_token(str(token.id), actor="test", now=NOW)
    return World(app.test_client(), app, tokens, event_ids, delivery_ids, clock)


def new_store(store_id: str = "newco", **overrides: Any) -> dict[str, Any]:
    """A store's body for POST /api/v1/stores."""
    entry = store_entry("shopline", store_id, shop=f"{store_id}.myshopline.com",
                        webhook_secrets=["newco-webhook-secret-0001"], access_token="newco-access-token-9876")
    entry.update(overrides)
    return entry
