"""The click store, the resolution order, migration 2's backfill and the attribution
report, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from adapters.values import Conversion
from adapters.clickid import find_click
from kwai_bridge import db
from kwai_bridge.attribution import IDENTIFIERS, Attribution, ClickStore, report
from kwai_bridge.config import StoreConfig
from kwai_bridge.db.migrations import _v1
from kwai_bridge.outbox import Finish, Outbox
from kwai_bridge.kwai.events import KwaiEvent
from tests.serving import ROOT, store_entry, write_stores

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
SHOPIFY = StoreConfig(id="acme", platform="shopify", shop="acme.myshopify.com", webhook_secrets=("s",),
                      pixel_id="p", access_token="t", click_window_days=30)
WOO = StoreConfig(id="woo", platform="woocommerce", shop="https://woo.example", webhook_secrets=("s",),
                  pixel_id="p", access_token="t", click_window_days=30)
ALL_IDS = {"order_id": "1001", "checkout_token": "chk-1", "cart_token": "cart-1", "customer_id": "77",
           "email_sha256": "e" * 64, "phone_sha256": "f" * 64}
ORDER_KEY = "b7e3c1f0a9d84e2c"  # the order's token, which a click by order id must bring


def conversion(key: str = "order:1001:EVENT_PURCHASE", *, click: str | None = None, source: str | None = None,
               platform: str = "shopify", skip: str | None = None, **identifiers: str) -> Conversion:
    event = KwaiEvent(event_name=key.split(":")[2], event_time=T0, third_party=platform,
                      idempotency_key=key, click_id=click)
    return Conversion(event=event, click_source=source, skip_reason=skip, identifiers=identifiers)


@pytest.fixture
def engine(database_url):
    engine = db.make_engine(database_url)
    db.migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine) -> ClickStore:
    return ClickStore(engine)


@pytest.fixture
def attribution(engine, store) -> Attribution:
    return Attribution(store, Outbox(engine))


# -- the click store -----------------------------------------------------------------------
def test_a_newer_click_replaces_an_older_one(store):
    store.record("acme", click_id="A", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    assert store.record("acme", click_id="B", identifiers={"cart_token": "t1"},
                        clicked_at=T0 + timedelta(hours=1), now=T0 + timedelta(hours=1)) == 1
    found = store.lookup("acme", {"cart_token": "t1"}, since=T0 - timedelta(days=30))
    assert (found["cart_token"].click_id, found["cart_token"].clicked_at) == ("B", T0 + timedelta(hours=1))


def test_an_older_click_arriving_late_does_not_overwrite_a_newer_one(store):
    store.record("acme", click_id="B", identifiers={"cart_token": "t1"}, clicked_at=T0 + timedelta(hours=1), now=T0)
    late = T0 + timedelta(hours=2)
    assert store.record("acme", click_id="A", identifiers={"cart_token": "t1", "email_sha256": "e" * 64},
                        clicked_at=T0, now=late) == 1  # only the new identifier is written
    found = store.lookup("acme", {"cart_token": "t1", "email_sha256": "e" * 64}, since=T0 - timedelta(days=1))
    assert {k: c.click_id for k, c in found.items()} == {"cart_token": "B", "email_sha256": "A"}


def test_entries_are_per_store(store):
    store.record("acme", click_id="A", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    assert store.lookup("other", {"cart_token": "t1"}, since=T0 - timedelta(days=1)) == {}


@pytest.mark.parametrize("age_days, kept", [(29, True), (30, True), (31, False)])
def test_entries_expire_after_the_click_window(attribution, store, age_days, kept):
    store.record("acme", click_id="Old", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    now = T0 + timedelta(days=age_days)
    (resolved,) = attribution.resolve(SHOPIFY, [conversion(cart_token="t1")], now)
    assert resolved.event.click_id == ("Old" if kept else None)
    assert store.prune(now=now, windows={"acme": 30}) == (0 if kept else 1)


def test_prune_uses_a_default_window_for_stores_no_longer_configured(store):
    store.record("gone", click_id="A", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    store.record("acme", click_id="B", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    assert store.prune(now=T0 + timedelta(days=40), windows={"acme": 60}, default_days=30) == 1
    assert store.lookup("acme", {"cart_token": "t1"}, since=T0) != {}


@pytest.mark.parametrize("platform, click_key, event_key, binds", [
    ("woocommerce", "wc_order_right", "wc_order_right", True),
    ("woocommerce", "wc_order_right", "wc_order_wrong", False),
    ("woocommerce", None, "wc_order_right", False),    # a guessed order id without its key
    ("woocommerce", "wc_order_right", None, False),
    ("shopify", "b7e3c1f0a9d8", "b7e3c1f0a9d8", True),  # Shopify's key is the order's token
    ("shopify", None, None, False),                    # an order id alone is guessable everywhere
    ("shopify", None, "b7e3c1f0a9d8", False),
    ("shopify", "k1", "k2", False),
])
def test_a_click_by_order_id_binds_only_with_the_matching_order_key(
        attribution, store, platform, click_key, event_key, binds):
    store.record("woo", click_id="C1", identifiers={"order_id": "727"}, order_key=click_key, clicked_at=T0, now=T0)
    store_config = WOO if platform == "woocommerce" else replace(SHOPIFY, id="woo")
    ids = {"order_id": "727", **({"order_key": event_key} if event_key else {})}
    (resolved,) = attribution.resolve(store_config, [conversion("order:727:EVENT_PURCHASE", platform=platform,
                                                                **ids)], T0)
    assert resolved.event.click_id == ("C1" if binds else None)
    assert resolved.click_source == ("click_store:order_id" if binds else None)


# -- resolution order ----------------------------------------------------------------------
ORDER = ("attribute", "order_meta", *(f"click_store:{k}" for k in IDENTIFIERS), "landing_url")


@pytest.mark.parametrize("winner", ORDER + (None,))
def test_each_source_beats_the_ones_after_it(attribution, store, winner):
    later = ORDER[ORDER.index(winner):] if winner else ()
    for source in later:
        if source.startswith("click_store:"):
            kind = source.split(":", 1)[1]
            store.record("acme", click_id=f"C-{kind}", identifiers={kind: ALL_IDS[kind]}, clicked_at=T0, now=T0,
                         order_key=ORDER_KEY if kind == "order_id" else None)
    # an adapter reports one source of its own: the strongest it found
    own = next((s for s in later if s in ("attribute", "order_meta", "landing_url")), None)
    given = conversion(click=f"C-{own}" if own else None, source=own, order_key=ORDER_KEY, **ALL_IDS)
    (resolved,) = attribution.resolve(SHOPIFY, [given], T0 + timedelta(hours=1))
    expected_click = None if winner is None else f"C-{winner.split(':')[-1]}"
    assert (resolved.event.click_id, resolved.click_source) == (expected_click, winner)


@pytest.mark.parametrize("older, newer", [
    ("checkout_token", "cart_token"),    # the case of the fault: the order of identifiers decided
    ("order_id", "email_sha256"),
    ("cart_token", "phone_sha256"),
    ("email_sha256", "checkout_token"),
])
def test_the_newest_click_kept_for_the_order_wins_whichever_identifier_found_it(
        attribution, store, older, newer):
    store.record("acme", click_id="OLD", identifiers={older: ALL_IDS[older]}, clicked_at=T0, now=T0,
                 order_key=ORDER_KEY if older == "order_id" else None)
    later = T0 + timedelta(minutes=5)
    store.record("acme", click_id="NEW", identifiers={newer: ALL_IDS[newer]}, clicked_at=later, now=later,
                 order_key=ORDER_KEY if newer == "order_id" else None)
    given = conversion(order_key=ORDER_KEY, **ALL_IDS)
    (resolved,) = attribution.resolve(SHOPIFY, [given], later + timedelta(minutes=1))
    assert (resolved.event.click_id, resolved.click_source) == ("NEW", f"click_store:{newer}")


def test_the_browsers_own_evidence_beats_a_newer_click_in_the_store(attribution, store):
    # The order's attribute is what the shopper's browser carried when the order was placed.
    later = T0 + timedelta(hours=1)
    store.record("acme", click_id="STORED", identifiers={"email_sha256": ALL_IDS["email_sha256"]},
                 clicked_at=later, now=later)
    given = conversion(click="ON-ORDER", source="attribute", **ALL_IDS)
    (resolved,) = attribution.resolve(SHOPIFY, [given], later)
    assert (resolved.event.click_id, resolved.click_source) == ("ON-ORDER", "attribute")


def test_skipped_conversions_are_left_alone(attribution, store):
    store.record("acme", click_id="C1", identifiers={"cart_token": "t1"}, clicked_at=T0, now=T0)
    given = conversion(skip="test order", cart_token="t1")
    assert attribution.resolve(SHOPIFY, [given], T0) == [given]


# -- migration 2 ---------------------------------------------------------------------------
def test_migration_2_backfills_event_identifiers_from_existing_events(database_url):
    engine = db.make_engine(database_url)
    with engine.begin() as conn:  # a database as release 1 left it
        _v1(conn)
        db.schema_version.create(conn)
        conn.execute(db.schema_version.insert().values(version=1))
        for n, identifiers in enumerate([{"order_id": "1", "email_sha256": "e" * 64}, {}, None,
                                         {"cart_token": "t9", "bad": 5}], start=1):
            conn.execute(db.events.insert().values(
                store_id="acme", platform="shopify", business_key=f"k{n}", event_name="EVENT_PURCHASE",
                status="unattributed", event="{}", attempts=0, created_at=T0, updated_at=T0,
                identifiers=None if identifiers is None else json.dumps(identifiers)))
    assert db.migrate(engine) == db.SCHEMA_VERSION
    assert db.migrate(engine) == db.SCHEMA_VERSION  # a second run changes nothing
    with engine.connect() as conn:
        rows = conn.execute(select(db.event_identifiers.c.event_id, db.event_identifiers.c.kind,
                                   db.event_identifiers.c.value).order_by("event_id", "kind")).all()
    assert [tuple(r) for r in rows] == [(1, "email_sha256", "e" * 64), (1, "order_id", "1"), (4, "cart_token", "t9")]
    engine.dispose()


def test_accept_indexes_identifiers_and_pruning_drops_them(engine):
    box = Outbox(engine)
    box.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key="d1", received_at=T0,
               body=b"{}", headers={}, conversions=[conversion(click="C", source="attribute", order_id="5",
                                                               cart_token="t5")])
    with engine.connect() as conn:
        assert conn.execute(select(db.event_identifiers.c.kind)).scalars().all() != []
    (row,) = box.list_events()
    (claimed,) = box.claim_for_sending(now=T0, limit=1, lease_seconds=60)
    box.finish_many([Finish(claimed.id, "sent", T0, response="{}", result=1)])
    assert box.prune(now=T0 + timedelta(days=31))["events"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(db.event_identifiers)).all() == []
    assert row.identifiers == {"order_id": "5", "cart_token": "t5"}


# -- the report ----------------------------------------------------------------------------
def _accept_all(engine) -> None:
    box = Outbox(engine)
    items = [
        ("order:1:EVENT_PURCHASE", "C1", "attribute"), ("order:2:EVENT_PURCHASE", "C2", "click_store:cart_token"),
        ("order:3:EVENT_PURCHASE", "C3", "click_store:cart_token"), ("order:4:EVENT_PURCHASE", None, None),
        ("cart:t1:EVENT_ADD_TO_CART:1", "C1", "landing_url"),
    ]
    box.accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key="d1", received_at=T0,
               body=b"{}", headers={}, conversions=[conversion(k, click=c, source=s) for k, c, s in items]
               + [conversion("order:5:EVENT_PURCHASE", skip="test order")])
    box.accept(store_id="other", platform="shopify", topic="orders/paid", delivery_key="d2",
               received_at=T0 + timedelta(days=2), body=b"{}", headers={},
               conversions=[conversion("order:9:EVENT_PURCHASE")])


def test_report_counts_sources_and_unattributed_per_event_name(engine):
    _accept_all(engine)
    assert report(Outbox(engine), store_id="acme", since=T0 - timedelta(days=1)) == {
        "EVENT_ADD_TO_CART": {"sources": {"landing_url": 1}, "unattributed": 0},
        "EVENT_PURCHASE": {"sources": {"attribute": 1, "click_store:cart_token": 2}, "unattributed": 1},
    }
    assert report(Outbox(engine), since=T0 + timedelta(days=1)) == {
        "EVENT_PURCHASE": {"sources": {}, "unattributed": 1}}


def test_attribution_report_command(engine, database_url, tmp_path, monkeypatch):
    from kwai_bridge import cli
    import kwai_bridge.cli.attribution  # noqa: F401  (registers the command)

    _accept_all(engine)
    monkeypatch.setenv("KWAI_BRIDGE_DATABASE_URL", database_url)
    monkeypatch.setenv("KWAI_BRIDGE_STORES", str(write_stores(tmp_path / "stores.toml",
                                                              [store_entry("shopify", "acme")])))
    runner = CliRunner()
    done = runner.invoke(cli.main, ["attribution", "report", "--store", "acme", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["EVENT_PURCHASE"] == {
        "sources": {"attribute": 1, "click_store:cart_token": 2}, "unattributed": 1}
    text = runner.invoke(cli.main, ["attribution", "report", "--since", "2026-11-27"])
    assert text.exit_code == 0 and "EVENT_PURCHASE: 0 attributed, 1 unattributed" in text.output
    pruned = runner.invoke(cli.main, ["attribution", "prune"])
    assert pruned.exit_code == 0 and "expired click(s) deleted" in pruned.output


# -- the WordPress plugin (no PHP runtime needed) --------------------------------------------
PLUGIN = ROOT / "integrations" / "woocommerce" / "kwai-bridge-click-id.php"


def test_the_plugin_hooks_checkout_and_writes_the_meta_key_the_adapter_reads():
    source = PLUGIN.read_text()
    assert "add_action( 'woocommerce_checkout_order_created'" in source
    assert "'woocommerce_store_api_checkout_update_order_meta'" in source
    assert "const KWAI_BRIDGE_META_KEY = '_kwai_click_id';" in source
    assert "const KWAI_BRIDGE_COOKIE   = '_kwai_click_id';" in source
    assert "sanitize_text_field(" not in source.replace("sanitize_text_field() is not used", "")
    pattern = re.search(r"preg_replace\( '#\[\^(.+?)\]#'", source).group(1)
    assert pattern == r"A-Za-z0-9+/=_.\-"
    assert (PLUGIN.parent / "readme.txt").read_text().startswith("=== Kwai Bridge Click ID ===")
    # what the plugin writes is what the WooCommerce adapter reads, "+" and "/" intact
    meta = [{"id": 1, "key": "_kwai_click_id", "value": "Ab+c/d=="}]
    assert find_click(meta=meta, params=("click_id",)) == ("Ab+c/d==", "order_meta")


def test_the_plugin_is_valid_php():
    if shutil.which("php") is None:
        reason = "no php on this machine (php -l checks the plugin's syntax)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    done = subprocess.run(["php", "-l", str(PLUGIN)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
