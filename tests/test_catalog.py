"""Stores in the database: the catalog's changes and their audit trail, the all-or-nothing
import, the registry every process serves from, and secrets sealed at rest."""
from __future__ import annotations

import json
from dataclasses import replace

import os
import stat
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from adapters.values import Conversion
from kwai_bridge import audit
from kwai_bridge.catalog import Catalog, StoreBusy, StoreExists, StoreRegistry, import_at_start, import_file
from kwai_bridge.config import ConfigError, ConfigErrors, check_store
from kwai_bridge.db import store_generation, stores
from kwai_bridge.kwai.events import KwaiEvent
from kwai_bridge.outbox import Outbox
from kwai_bridge.runtime import Runtime
from kwai_bridge.sealing import Sealer, SealingError, hint, make_sealer, new_key
from tests.serving import SECRETS, store_entry, write_stores
from tests.threads import at_once
from tests.outbox_helpers import engine  # noqa: F401  (a fixture: a migrated database)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
KEY_A, KEY_B = new_key(), new_key()


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def catalog(engine):
    return Catalog(engine, sealer=Sealer((KEY_A.encode(),), "test"))


def config(store_id: str = "acme", platform: str = "shopify", **overrides):
    return check_store(store_entry(platform, store_id, **overrides))


# -- changes and their trail ------------------------------------------------------------
def test_create_change_delete_each_with_a_version_a_generation_and_an_audit_entry(catalog):
    assert catalog.generation() == 0 and catalog.snapshot().stores.get("acme") is None
    created = catalog.create(config(), actor="ops@agency.example", now=NOW)
    assert (created.version, created.created_at, created.config.pixel_id) == (1, NOW, "pixel-shopify")
    assert catalog.generation() == 1

    later = NOW + timedelta(minutes=5)
    changed = catalog.replace(config(pixel_id="px-2", access_token="tok-new-value-0042"), actor="ops@agency.example",
                              now=later)
    assert (changed.version, changed.updated_at, changed.config.pixel_id) == (2, later, "px-2")
    assert catalog.generation() == 2
    same = catalog.replace(changed.config, actor="ops@agency.example", now=later)
    assert same.version == 2 and catalog.generation() == 2, "an unchanged store is not rewritten"

    with pytest.raises(StoreExists, match="'acme' already has this id"):
        catalog.create(config(), actor="x", now=NOW)
    with pytest.raises(StoreExists, match="shopify shop"):
        catalog.create(config("other"), actor="x", now=NOW)  # the same shop under another id

    assert catalog.delete("acme", actor="ops@agency.example", now=later) == 0
    assert catalog.get("acme") is None and catalog.generation() == 3
    trail = [(e.action, e.target, e.actor, dict(e.detail)) for e in audit.entries(catalog.engine)]
    assert trail == [
        ("store.delete", "store:acme", "ops@agency.example", {"waiting_events": 0, "force": False}),
        ("store.update", "store:acme", "ops@agency.example", {"fields": ["pixel_id", "access_token"]}),
        ("store.create", "store:acme", "ops@agency.example", {"platform": "shopify"}),
    ]
    assert "tok-new-value-0042" not in repr(trail)


def test_a_store_with_events_waiting_is_deleted_only_by_force(catalog, engine):
    catalog.create(config(), actor="a", now=NOW)
    event = KwaiEvent(event_name="EVENT_PURCHASE", event_time=NOW, third_party="shopify",
                      idempotency_key="order:1:EVENT_PURCHASE", click_id="clk")
    Outbox(engine).accept(store_id="acme", platform="shopify", topic="orders/paid", delivery_key="d1",
                          received_at=NOW, body=b"{}", headers={}, conversions=[Conversion(event=event)])
    with pytest.raises(StoreBusy, match="1 event"):
        catalog.delete("acme", actor="a", now=NOW)
    assert catalog.get("acme") is not None
    assert catalog.delete("acme", actor="a", now=NOW, force=True) == 1


# -- the import ----------------------------------------------------------------------
def test_an_import_with_any_wrong_store_names_every_problem_and_changes_nothing(catalog, tmp_path):
    good = write_stores(tmp_path / "good.toml", [store_entry("shopify", "acme")])
    import_file(catalog, good, environ={}, actor="cli", now=NOW)
    generation = catalog.generation()
    wrong = write_stores(tmp_path / "wrong.toml", [
        store_entry("shopify", "acme", pixel_id="px-changed"),
        store_entry("woocommerce", "woo", pixel_id=123),
        {**store_entry("shopline", "line"), "platfrom": "shopline", "access_token": "$LINE_TOKEN"},
    ])
    with pytest.raises(ConfigErrors) as caught:
        import_file(catalog, wrong, environ={}, actor="cli", now=NOW)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.errors) == 3
    assert f'{wrong}: store "woo": pixel_id: must be a non-empty string (quote numbers: pixel_id = "123")' in lines
    assert f'{wrong}: store "line": platfrom: unknown field (did you mean platform?)' in lines
    assert (f'{wrong}: store "line": access_token: write "${{LINE_TOKEN}}" to read the environment variable '
            "LINE_TOKEN") in lines
    assert catalog.generation() == generation and catalog.ids() == ["acme"]
    assert catalog.get("acme").config.pixel_id == "pixel-shopify"


def test_import_creates_updates_leaves_alone_and_prunes(catalog, tmp_path):
    path = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"), store_entry("woocommerce", "woo")])
    first = import_file(catalog, path, environ={}, actor="cli", now=NOW)
    assert (first.created, first.updated) == (("acme", "woo"), ())
    generation = catalog.generation()
    again = import_file(catalog, path, environ={}, actor="cli", now=NOW)
    assert again.unchanged == ("acme", "woo") and catalog.generation() == generation

    write_stores(path, [store_entry("shopify", "acme", test_mode=True)])
    kept = import_file(catalog, path, environ={}, actor="cli", now=NOW)
    assert (kept.updated, kept.removed, catalog.ids()) == (("acme",), (), ["acme", "woo"])
    pruned = import_file(catalog, path, environ={}, actor="cli", now=NOW, prune=True)
    assert (pruned.unchanged, pruned.removed, catalog.ids()) == (("acme",), ("woo",), ["acme"])


def test_processes_starting_together_with_the_same_file_all_import_it(engine, tmp_path):
    """The machines of one deployment start at once with the same stores file: each
    process imports it, and none fails because another created the stores first."""
    key = (KEY_A.encode(),)
    for round_ in range(5):
        path = write_stores(tmp_path / f"stores-{round_}.toml",
                            [store_entry("shopify", f"acme{round_}", shop=f"acme{round_}.myshopify.com"),
                             store_entry("woocommerce", f"woo{round_}", shop=f"https://woo{round_}.example")])
        catalogs = [Catalog(engine, sealer=Sealer(key, "test")) for _ in range(6)]
        outcomes, errors = at_once(
            lambda catalog: import_at_start(catalog, path, environ={}, actor="test", now=NOW), catalogs)
        assert errors == [] and all(o is not None for o in outcomes), (outcomes, errors)
        created = [name for o in outcomes for name in o.created]
        assert sorted(created) == sorted([f"acme{round_}", f"woo{round_}"])


def test_references_are_resolved_at_import_and_kept_for_export(catalog, tmp_path):
    path = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", access_token="${ACME_TOKEN}")])
    with pytest.raises(ConfigError, match="environment variable ACME_TOKEN is not set"):
        import_file(catalog, path, environ={}, actor="cli", now=NOW)
    import_file(catalog, path, environ={"ACME_TOKEN": "tok-from-env-7788"}, actor="cli", now=NOW)
    record = catalog.get("acme")
    assert record.config.access_token == "tok-from-env-7788" and record.refs == {"access_token": "ACME_TOKEN"}
    # A new value behind the same name is a change: the token is replaced without a restart.
    assert import_file(catalog, path, environ={"ACME_TOKEN": "tok-rotated-9911"}, actor="cli", now=NOW).updated


def test_at_start_a_wrong_file_refuses_an_empty_database_and_is_logged_beside_a_full_one(catalog, tmp_path, caplog):
    wrong = write_stores(tmp_path / "wrong.toml", [store_entry("shopify", "acme", webhook_secrets=[])])
    with pytest.raises(ConfigError, match="no stores in the database"):
        import_at_start(catalog, str(wrong), environ={}, actor="cli", now=NOW)
    catalog.create(config(), actor="a", now=NOW)
    assert import_at_start(catalog, str(wrong), environ={}, actor="cli", now=NOW) is None
    assert 'store "acme": webhook_secrets' in caplog.text
    assert catalog.get("acme").config.webhook_secrets == (SECRETS["shopify"],)


# -- the registry ----------------------------------------------------------------------
def test_every_registry_sees_a_change_at_its_next_check_and_reads_nothing_between(catalog):
    ticks = Ticks()
    first, second = (StoreRegistry(catalog, refresh_seconds=2.0, clock=ticks) for _ in range(2))
    catalog.create(config(), actor="a", now=NOW)
    queries = []
    original = catalog.generation
    catalog.generation = lambda: queries.append(1) or original()  # counts the checks, reads the real row
    assert first.stores.get("acme") is None and not queries, "no query before refresh_seconds"
    ticks.now = 2.0
    assert first.stores.get("acme") is not None and second.stores.get("acme") is not None
    assert len(queries) == 2
    assert first.stores.get("acme") is not None and len(queries) == 2


def test_a_store_being_changed_never_disappears(catalog):
    catalog.create(config(), actor="a", now=NOW)
    catalog.create(config("woo", "woocommerce"), actor="a", now=NOW)
    registry = StoreRegistry(catalog, refresh_seconds=0)
    stop = threading.Event()
    missing: list[set[str]] = []

    def read() -> None:
        while not stop.is_set():
            ids = {s.id for s in registry.stores}
            if ids != {"acme", "woo"}:
                missing.append(ids)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for n in range(30):
            catalog.replace(config(pixel_id=f"px-{n}"), actor="a", now=NOW)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not missing
    assert registry.stores.get("acme").pixel_id == "px-29"


# -- secrets ---------------------------------------------------------------------------
def test_no_secret_is_stored_in_clear(catalog, engine):
    alert_url = "https://hooks.example.com/services/T0/B0/acme-alerts"
    catalog.create(config(access_token="tok-clear-never-4321", webhook_secrets=["whsec-clear-never-8765"],
                          click_tokens=["c" * 40], alert_webhook_url=alert_url), actor="a", now=NOW)
    with engine.connect() as conn:
        document = conn.execute(select(stores.c.document)).scalar()
    for secret in ("tok-clear-never-4321", "whsec-clear-never-8765", "c" * 40, "acme-alerts"):
        assert secret not in document
    assert hint("tok-clear-never-4321") in document and "4321" in hint("tok-clear-never-4321")
    assert catalog.get("acme").config.access_token == "tok-clear-never-4321"
    assert catalog.get("acme").config.alert_webhook_url == alert_url


def test_an_alert_url_stored_in_clear_by_an_earlier_release_still_reads(catalog, engine):
    """Earlier releases kept a store's alert URL among its plain fields; such a store reads
    as before, and its next save seals it."""
    alert_url = "https://hooks.example.com/services/T0/B0/acme-alerts"
    catalog.create(config(), actor="a", now=NOW)
    with engine.begin() as conn:
        document = json.loads(conn.execute(select(stores.c.document)).scalar())
        del document["secrets"]["alert_webhook_url"]
        document["fields"]["alert_webhook_url"] = alert_url
        conn.execute(stores.update().values(document=json.dumps(document)))
    assert catalog.get("acme").config.alert_webhook_url == alert_url
    catalog.replace(replace(catalog.get("acme").config, quiet_hours=6), actor="a", now=NOW)
    with engine.connect() as conn:
        stored = conn.execute(select(stores.c.document)).scalar()
    assert "acme-alerts" not in stored
    assert catalog.get("acme").config.alert_webhook_url == alert_url


def test_an_unset_optional_secret_has_no_hint():
    assert hint("") == ""
    assert hint("short") == "…"


def test_keys_rotate_and_a_missing_key_keeps_what_the_process_had(engine):
    old = Catalog(engine, sealer=Sealer((KEY_A.encode(),), "test"))
    old.create(config(), actor="a", now=NOW)
    registry = StoreRegistry(Catalog(engine, sealer=Sealer((KEY_B.encode(),), "test")), refresh_seconds=0)
    assert registry.stores.get("acme") is None and "acme" in registry.error

    both = Catalog(engine, sealer=Sealer((KEY_B.encode(), KEY_A.encode()), "test"))
    assert both.reseal_all(actor="a", now=NOW) == 1
    new_only = Catalog(engine, sealer=Sealer((KEY_B.encode(),), "test"))
    assert new_only.get("acme").config.access_token == "token-shopify"
    with pytest.raises(SealingError):
        old.get("acme")
    follower = StoreRegistry(new_only, refresh_seconds=0)
    assert follower.stores.get("acme") is not None and follower.error is None
    # The keys are lost from this process's view: it keeps the version it had.
    follower.catalog = old
    new_only.replace(config(pixel_id="px-new"), actor="a", now=NOW)
    assert follower.stores.get("acme").pixel_id == "pixel-shopify" and "acme" in follower.error


def test_read_only_catalogs_show_hints_and_cannot_write(engine, catalog):
    catalog.create(config(access_token="tok-readonly-5555"), actor="a", now=NOW)
    reader = Catalog(engine, sealer=None)
    assert reader.get("acme").config.access_token == "…5555"
    with pytest.raises(SealingError, match="cannot be changed"):
        reader.create(config("beta", shop="beta.myshopify.com"), actor="a", now=NOW)


def test_sqlite_gets_a_private_key_file_and_postgresql_refuses_without_keys(tmp_path, postgres_url):
    database = tmp_path / "bridge.db"
    sealer = make_sealer("", database_url=f"sqlite:///{database}")
    key_file = tmp_path / "bridge.db.keys"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    again = make_sealer("", database_url=f"sqlite:///{database}")
    assert again.open(sealer.seal("s3cret")) == "s3cret"
    with pytest.raises(SealingError, match="KWAI_BRIDGE_SECRET_KEYS is not set"):
        make_sealer("", database_url=postgres_url)
    with pytest.raises(ConfigError, match="KWAI_BRIDGE_SECRET_KEYS is not set"):
        Runtime.from_env({"KWAI_BRIDGE_DATABASE_URL": postgres_url}, migrate=True)
    with pytest.raises(SealingError, match="Fernet key"):
        make_sealer("not-a-key", database_url=postgres_url)


def test_generation_row_is_created_by_the_first_change(engine, catalog):
    with engine.connect() as conn:
        assert conn.execute(select(store_generation)).all() == []
    catalog.create(config(), actor="a", now=NOW)
    with engine.connect() as conn:
        assert conn.execute(select(store_generation.c.generation)).scalar() == 1


def test_a_store_created_a_moment_ago_is_found_at_once_and_misses_are_rate_limited(catalog):
    ticks = Ticks()
    registry = StoreRegistry(catalog, refresh_seconds=60, clock=ticks)
    catalog.create(config(), actor="a", now=NOW)
    queries = []
    original = catalog.generation
    catalog.generation = lambda: queries.append(1) or original()
    assert registry.get("acme") is not None, "a miss looks at the database again"
    assert registry.find_by_shop("shopify", "ACME.myshopify.com") is not None
    assert registry.get("nosuch") is None and registry.get("other") is None
    assert len(queries) == 1, "made-up ids cost one look per MISS_RECHECK_SECONDS, not one each"
    ticks.now += 1
    assert registry.get("nosuch") is None and len(queries) == 2


def test_fields_left_at_their_default_are_not_written_so_new_defaults_reach_them(catalog, engine):
    import orjson

    catalog.create(config(test_mode=False, click_window_days=7), actor="a", now=NOW)
    with engine.connect() as conn:
        written = orjson.loads(conn.execute(select(stores.c.document)).scalar())["fields"]
    assert written["click_window_days"] == 7 and "test_mode" not in written and "late_binding_hours" not in written
    assert catalog.get("acme").config.late_binding_hours == 24


def test_pruning_a_store_with_events_waiting_is_refused_unless_forced(catalog, engine, tmp_path):
    both = write_stores(tmp_path / "both.toml", [store_entry("shopify", "acme"), store_entry("woocommerce", "woo")])
    import_file(catalog, both, environ={}, actor="cli", now=NOW)
    event = KwaiEvent(event_name="EVENT_PURCHASE", event_time=NOW, third_party="woocommerce",
                      idempotency_key="order:7:EVENT_PURCHASE", click_id="clk")
    Outbox(engine).accept(store_id="woo", platform="woocommerce", topic="order.updated", delivery_key="d7",
                          received_at=NOW, body=b"{}", headers={}, conversions=[Conversion(event=event)])
    only_acme = write_stores(tmp_path / "acme.toml", [store_entry("shopify", "acme", pixel_id="px-new")])
    with pytest.raises(ConfigError, match=r"store .woo. \(1\)"):
        import_file(catalog, only_acme, environ={}, actor="cli", now=NOW, prune=True)
    assert catalog.ids() == ["acme", "woo"] and catalog.get("acme").config.pixel_id == "pixel-shopify"
    forced = import_file(catalog, only_acme, environ={}, actor="cli", now=NOW, prune=True, force=True)
    assert forced.removed == ("woo",) and catalog.ids() == ["acme"]
