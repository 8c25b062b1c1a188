"""The worker's watch on loopback: a disabled WooCommerce webhook and a deleted Shopify
(or Shopline) subscription are restored, with one alert each saying when the gap began;
nothing is done before the check is due, and nothing is told when all is well."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kwai_bridge.alerting import AlertSender
from kwai_bridge.connect import run_connect
from kwai_bridge.links import Links
from kwai_bridge.reconcile import Reconciler
from kwai_bridge.runtime import Runtime, build_pipeline
from kwai_bridge.watch import PlatformJobs, due
from tests.alert_receiver import AlertReceiver
from tests.fake_platforms import FAKES, api_entry
from tests.serving import bridge_env, write_stores

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
PUBLIC = "http://127.0.0.1:9"


@pytest.fixture
def receiver():
    receiver = AlertReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def jobs_for(tmp_path, sqlite_url, fake, receiver, clock):
    stores = write_stores(tmp_path / "stores.toml", [api_entry(fake, "acme")])
    runtime = Runtime.from_env(bridge_env(database_url=sqlite_url, stores=stores, PUBLIC_URL=PUBLIC), migrate=True)
    runtime.import_stores_file()
    report = run_connect(runtime.registry.get("acme"), links=Links(runtime.engine), public_url=PUBLIC, now=NOW)
    assert report.created and not report.errors
    alerts = AlertSender(runtime.engine, runtime.registry, url=receiver.url, clock=clock, retry_delays=())
    return PlatformJobs(engine=runtime.engine, registry=runtime.registry, settings=runtime.settings,
                        reconciler=Reconciler(runtime.engine, build_pipeline(runtime)),
                        tell=lambda m, s: alerts.tell(m, store_url=s.alert_webhook_url), clock=clock)


@pytest.mark.parametrize("platform, damage", [("woocommerce", "disable"), ("woocommerce", "pause"),
                                              ("shopify", "delete"), ("shopline", "delete")])
def test_the_watch_restores_a_subscription_with_one_alert(tmp_path, sqlite_url, receiver, platform, damage):
    now = [NOW]
    with FAKES[platform]() as fake:
        jobs = jobs_for(tmp_path, sqlite_url, fake, receiver, lambda: now[0])
        topics = fake.topics()
        sub_id = next(iter(fake.subscriptions))
        if damage == "delete":
            del fake.subscriptions[sub_id]
        else:
            fake.subscriptions[sub_id]["status"] = {"disable": "disabled", "pause": "paused"}[damage]
        now[0] = NOW + timedelta(minutes=30)
        jobs.run_due()  # not due yet (60 minutes by default): nothing is called
        assert fake.topics() != topics or damage != "delete"
        assert receiver.take() == []
        now[0] = NOW + timedelta(minutes=61)
        jobs.run_due()
        assert fake.topics() == topics
        assert all(s.get("status", "active") == "active" for s in fake.subscriptions.values())
        alerts = receiver.bodies[:]
        assert [(b["alert"]["kind"], b["alert"]["store"]) for b in alerts] == [("subscription", "acme")]
        assert "since" in alerts[0]["alert"] and ("made again" in alerts[0]["text"] or "repaired" in alerts[0]["text"])
        receiver.take()
        now[0] = NOW + timedelta(minutes=125)
        jobs.run_due()  # all well: nothing told
        assert receiver.take() == []


@pytest.mark.parametrize("last, minutes, expected", [(None, 60, True), (NOW, 60, False),
                                                     (NOW - timedelta(minutes=60), 60, True),
                                                     (NOW - timedelta(minutes=14), 15, False)])
def test_due(last, minutes, expected):
    assert due(last, minutes, now=NOW) is expected


def test_a_stores_own_interval_wins_over_the_process_setting():
    from kwai_bridge.config import check_store
    from kwai_bridge.settings import settings_from_env
    from tests.serving import store_entry

    settings = settings_from_env({"KWAI_BRIDGE_RECONCILE_MINUTES": "30"})
    own = check_store(store_entry("woocommerce", "a", reconcile_minutes=5))
    default = check_store(store_entry("woocommerce", "b"))
    assert settings.per_store(own, "reconcile_minutes") == 5
    assert settings.per_store(default, "reconcile_minutes") == 30
    assert settings.per_store(default, "subscription_check_minutes") == 60
    assert settings.per_store(default, "reconcile_backfill_hours") == 72
