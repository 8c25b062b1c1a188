"""Privacy topics through the app (signed webhooks, real database): customer and shop
redaction for Shopify and Shopline, the data request, and `privacy export`."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kwai_bridge import db
from kwai_bridge.attribution import ClickStore
from server import create_app
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ORDER = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
CART = json.loads(fixture_bytes("shopify/shopify_carts_create.json", shop=SHOPS["shopify"]))
REDACT = json.loads(fixture_bytes("shopify/shopify_customers_redact.json", shop=SHOPS["shopify"]))  # customer 191167, john@example.com
SHOP_REDACT = json.loads(fixture_bytes("shopify/shopify_shop_redact.json", shop=SHOPS["shopify"]))
DATA_REQUEST = json.loads(fixture_bytes("shopify/shopify_customers_data_request.json", shop=SHOPS["shopify"]))
EMAIL_A = hashlib.sha256(b"john@example.com").hexdigest()
STORE_OF = {"shopify": "acme", "shopline": "line"}
TOPICS = {"shopify": ("customers/redact", "shop/redact"), "shopline": ("customers/redact", "merchants/redact")}


def order(order_id: int, *, customer_id: int | None, email: str | None, cart_token: str | None) -> dict:
    return {**ORDER, "id": order_id, "token": f"token-{order_id}", "test": False, "financial_status": "paid",
            "email": email, "contact_email": None, "cart_token": cart_token,
            "customer": {**ORDER["customer"], "id": customer_id, "email": email} if customer_id else None}


@pytest.fixture
def app(tmp_path, database_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"), store_entry("shopline", "line")])
    db.migrate(db.make_engine(database_url))
    return create_app({"DATABASE_URL": database_url, "STORES": str(stores)}, clock=lambda: T0)


def send(client, platform: str, topic: str, payload: dict) -> dict:
    if "shop_domain" in payload:  # a privacy request names the shop it is for
        payload = {**payload, "shop_domain": SHOPS[platform]}
    body = json.dumps(payload).encode()
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
    answer = client.post(f"/webhooks/{platform}/{STORE_OF[platform]}", data=body, headers=headers)
    assert answer.status_code == 200, answer.json
    convert(client.application)  # the worker's converter, moments later
    return answer.json


def populate(client, platform: str) -> None:
    """Customer A (the fixture's customer 191167) and customer B, with clicks."""
    store = STORE_OF[platform]
    send(client, platform, "carts/create", {**CART, "id": "cart-A", "token": "cart-A"})
    send(client, platform, "orders/paid", order(299938, customer_id=191167, email="john@example.com",
                                                cart_token="cart-A"))
    send(client, platform, "orders/paid", order(280263, customer_id=None, email=None, cart_token=None))
    send(client, platform, "orders/paid", order(555, customer_id=999, email="b@example.com", cart_token="cart-B"))
    for body in ({"click_id": "CA", "cart_token": "cart-A"}, {"click_id": "CA", "email": "john@example.com"},
                 {"click_id": "CB", "cart_token": "cart-B"}):
        answer = client.post(f"/clicks/{store}", json=body, headers={"Origin": f"https://{SHOPS[platform]}"})
        assert answer.status_code == 202


def held(app, store_id: str) -> dict:
    """Per business key: (identifiers JSON, identifier rows, body kept), and the clicks kept."""
    engine = app.extensions["kwai_bridge.runtime"].engine
    e, ei, d = db.events.c, db.event_identifiers.c, db.deliveries.c
    with engine.connect() as conn:
        events = {row.business_key: (json.loads(row.identifiers) if row.identifiers else {},
                                     conn.execute(select(ei.kind).where(ei.event_id == row.id)).scalars().all(),
                                     conn.execute(select(d.body).where(d.id == row.delivery_id)).scalar() is not None)
                  for row in conn.execute(select(db.events).where(e.store_id == store_id))}
    clicks = ClickStore(engine).lookup(store_id, {"cart_token": "cart-A", "email_sha256": EMAIL_A}, since=T0)
    clicks_b = ClickStore(engine).lookup(store_id, {"cart_token": "cart-B"}, since=T0)
    return {"events": events, "clicks": sorted(clicks) + [f"B:{k}" for k in clicks_b]}


def redacted(entry) -> bool:
    identifiers, rows, body_kept = entry
    return identifiers == {} and rows == [] and not body_kept


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_customer_redaction_removes_what_is_held_about_that_customer_only(app, platform):
    client = app.test_client()
    populate(client, platform)
    store = STORE_OF[platform]
    before = held(app, store)
    assert before["clicks"] == ["cart_token", "email_sha256", "B:cart_token"]
    assert send(client, platform, TOPICS[platform][0], REDACT)["status"] == "privacy"
    after = held(app, store)
    assert set(after["events"]) == set(before["events"]), "events stay, for counting"
    customer_a = [k for k in after["events"] if ":299938:" in k or ":280263:" in k or k.startswith("cart:cart-A")]
    assert len(customer_a) == 3
    assert all(redacted(after["events"][k]) for k in customer_a)
    assert after["events"]["order:555:EVENT_PURCHASE"] == before["events"]["order:555:EVENT_PURCHASE"]
    assert not redacted(after["events"]["order:555:EVENT_PURCHASE"])
    assert after["clicks"] == ["B:cart_token"]


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_customer_redaction_reaches_bodies_that_produced_no_event(app, platform):
    client = app.test_client()
    populate(client, platform)
    unpaid = {**order(777, customer_id=191167, email="john@example.com", cart_token=None),
              "financial_status": "pending"}
    other = {**order(888, customer_id=999, email="b@example.com", cart_token=None), "financial_status": "pending"}
    for payload in (unpaid, other):
        assert send(client, platform, "orders/updated", payload)["status"] == "received"  # then ignored
    engine = app.extensions["kwai_bridge.runtime"].engine
    d = db.deliveries.c

    def kept(order_id: int) -> bool:
        with engine.connect() as conn:
            bodies = conn.execute(select(d.body).where(d.store_id == STORE_OF[platform], d.outcome == "ignored"))
            return any(b is not None and f'"id": {order_id}'.encode() in b for (b,) in bodies)

    assert kept(777) and kept(888)
    send(client, platform, TOPICS[platform][0], REDACT)
    assert not kept(777), "the customer's ignored delivery still holds its body"
    assert kept(888), "another customer's body was removed"


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_shop_redaction_removes_everything_of_that_store(app, platform):
    client = app.test_client()
    populate(client, "shopify")
    populate(client, "shopline")
    other = STORE_OF["shopline" if platform == "shopify" else "shopify"]
    untouched = held(app, other)
    assert send(client, platform, TOPICS[platform][1], SHOP_REDACT)["status"] == "privacy"
    after = held(app, STORE_OF[platform])
    assert len(after["events"]) == 4 and all(redacted(entry) for entry in after["events"].values())
    assert after["clicks"] == []
    assert held(app, other) == untouched


def test_a_redaction_delivered_twice_is_one_request(app):
    client = app.test_client()
    populate(client, "shopify")
    assert send(client, "shopify", "customers/redact", REDACT)["status"] == "privacy"
    assert send(client, "shopify", "customers/redact", REDACT)["status"] == "duplicate"


def test_a_data_request_changes_nothing_and_says_an_export_is_due(app, caplog):
    client = app.test_client()
    populate(client, "shopify")
    before = held(app, "acme")
    caplog.set_level(logging.INFO)
    assert send(client, "shopify", "customers/data_request", DATA_REQUEST)["status"] == "privacy"
    assert held(app, "acme") == before
    assert "kwai-bridge privacy export --store acme --customer 191167" in caplog.text
    assert "john@" not in caplog.text and "555-625" not in caplog.text


def test_privacy_export_prints_what_is_held_about_the_customer(app, database_url, tmp_path, monkeypatch):
    from kwai_bridge import cli
    import kwai_bridge.cli.privacy  # noqa: F401  (registers the command)

    client = app.test_client()
    populate(client, "shopify")
    monkeypatch.setenv("KWAI_BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("KWAI_BRIDGE_STORES", str(tmp_path / "stores.toml"))
    runner = CliRunner()
    by_id = runner.invoke(cli.main, ["privacy", "export", "--store", "acme", "--customer", "191167"])
    assert by_id.exit_code == 0, by_id.output
    found = json.loads(by_id.output)
    assert sorted(e["business_key"] for e in found["events"]) == [
        "cart:cart-A:EVENT_ADD_TO_CART:3", "order:299938:EVENT_PURCHASE"]
    # the clicks came after the webhooks: late binding gave both events the cart's click
    assert {(e["status"], e["click_id"], e["click_source"]) for e in found["events"]} == {
        ("pending", "CA", "click_store:cart_token")}
    assert {(c["kind"], c["click_id"]) for c in found["clicks"]} == {("cart_token", "CA"), ("email_sha256", "CA")}
    assert {(d["topic"], d["body_kept"]) for d in found["deliveries"]} == {("carts/create", True), ("orders/paid", True)}
    assert "john@example.com" not in by_id.output
    by_email = runner.invoke(cli.main, ["privacy", "export", "--store", "acme", "--email", " John@Example.com"])
    assert json.loads(by_email.output)["events"] == found["events"]
    by_order = runner.invoke(cli.main, ["privacy", "export", "--store", "acme", "--order", "280263"])
    assert [e["business_key"] for e in json.loads(by_order.output)["events"]] == ["order:280263:EVENT_PURCHASE"]
    nobody = runner.invoke(cli.main, ["privacy", "export", "--store", "acme"])
    assert nobody.exit_code == 2 and "name the customer" in nobody.output


def test_redaction_is_seen_by_a_later_export(app, database_url, tmp_path, monkeypatch):
    from kwai_bridge import cli
    import kwai_bridge.cli.privacy  # noqa: F401

    client = app.test_client()
    populate(client, "shopify")
    send(client, "shopify", "customers/redact", REDACT)
    monkeypatch.setenv("KWAI_BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("KWAI_BRIDGE_STORES", str(tmp_path / "stores.toml"))
    done = CliRunner().invoke(cli.main, ["privacy", "export", "--store", "acme", "--customer", "191167"])
    assert json.loads(done.output)["events"] == [] and json.loads(done.output)["clicks"] == []


def test_a_failed_redaction_is_not_recorded_so_the_platform_retry_does_it(app):
    client = app.test_client()
    populate(client, "shopify")
    pipeline = app.extensions["kwai_bridge.pipeline"]
    working = pipeline.privacy

    class Broken:
        def apply(self, *args, **kwargs):
            raise RuntimeError("database went away")

    pipeline.privacy = Broken()
    body = json.dumps(REDACT).encode()
    headers = headers_for("shopify", "customers/redact", shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body)
    app.testing = False  # answer as in production: a 500, not a raised exception
    assert client.post("/webhooks/shopify/acme", data=body, headers=headers).status_code == 500
    pipeline.privacy = working
    retry = client.post("/webhooks/shopify/acme", data=body, headers=headers)
    assert retry.status_code == 200 and retry.json["status"] == "privacy"
    assert held(app, "acme")["clicks"] == ["B:cart_token"], "the retry did the redaction"


# -- requests of any size ---------------------------------------------------------------------
MANY = 20_000


def export(database_url, tmp_path, monkeypatch, *args: str) -> dict:
    from kwai_bridge import cli
    import kwai_bridge.cli.privacy  # noqa: F401  (registers the command)

    monkeypatch.setenv("KWAI_BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("KWAI_BRIDGE_STORES", str(tmp_path / "stores.toml"))
    done = CliRunner().invoke(cli.main, ["privacy", "export", "--store", "acme", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_a_redaction_naming_20000_orders_is_done(app, database_url, tmp_path, monkeypatch):
    """One identifier per order: SQLite refused the single OR chain past about 1,000
    ('Expression tree is too large'), so the request failed on every retry."""
    client = app.test_client()
    populate(client, "shopify")
    orders = [299938, 280263, *range(10**9, 10**9 + MANY - 2)]
    named = export(database_url, tmp_path, monkeypatch, *(arg for o in orders for arg in ("--order", str(o))))
    assert sorted(e["business_key"] for e in named["events"]) == [  # the cart through order 299938's token
        "cart:cart-A:EVENT_ADD_TO_CART:3", "order:280263:EVENT_PURCHASE", "order:299938:EVENT_PURCHASE"]
    assert send(client, "shopify", "customers/redact", {**REDACT, "orders_to_redact": orders})["status"] == "privacy"
    after = held(app, "acme")
    assert all(redacted(after["events"][k]) for k in after["events"] if ":299938:" in k or ":280263:" in k)
    assert not redacted(after["events"]["order:555:EVENT_PURCHASE"])
    assert after["clicks"] == ["B:cart_token"]


def test_a_customer_with_400_orders_is_exported_and_redacted(app, database_url, tmp_path, monkeypatch):
    """Each order brings its identifiers (order id, tokens) into the search: far more than
    SQLite took in one OR chain."""
    client = app.test_client()
    populate(client, "shopify")
    for n in range(400):
        send(client, "shopify", "orders/paid", {
            **order(7_000_000 + n, customer_id=191167, email="john@example.com", cart_token=f"cart-{n}"),
            "checkout_token": f"checkout-{n}"})
    found = export(database_url, tmp_path, monkeypatch, "--customer", "191167")
    assert len(found["events"]) == 400 + 2  # and the cart and order of `populate`
    assert send(client, "shopify", "customers/redact", {**REDACT, "orders_to_redact": []})["status"] == "privacy"
    after = held(app, "acme")
    mine = [k for k in after["events"] if k != "order:555:EVENT_PURCHASE" and ":280263:" not in k]
    assert len(mine) == 402 and all(redacted(after["events"][k]) for k in mine)
    assert not redacted(after["events"]["order:555:EVENT_PURCHASE"])
    assert export(database_url, tmp_path, monkeypatch, "--customer", "191167")["events"] == []
