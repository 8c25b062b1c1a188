"""Conversion in the worker (`KWAI_BRIDGE_CONVERSION=worker`): the webhook path stores
the verified delivery as received and answers; `Pipeline.convert_received` (the worker's
converter) makes its events. Through the app and a real database, on both backends:
the events are the ones converting at once makes, a retry is still a duplicate, a
poison delivery does not stop the others, and nothing received is lost or converted
twice."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import CheckConstraint, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError

from kwai_bridge import db
from kwai_bridge.conversion import Converter
from kwai_bridge.pipeline import Pipeline
from kwai_bridge.settings import settings_from_env
from server import create_app
from tests.converting import convert
from tests.poison import BASES, body_of, changed, deliver
from tests.serving import store_entry, write_stores
from tests.test_poison import CASES
from tests.threads import at_once

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
PLATFORMS = ("shopify", "shopline", "woocommerce")
#: Every topic with events to make (the privacy topics are handled at once in both modes).
CONVERTED_TOPICS = [key for key in BASES if "redact" not in key[1] and "data_request" not in key[1]]


def make_app(tmp_path, url: str, conversion: str, name: str):
    stores = write_stores(tmp_path / f"{name}.toml", [store_entry(p, p) for p in PLATFORMS])
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "STORES": str(stores), "CONVERSION": conversion}, clock=lambda: T0)
    app.testing = False  # a fault is a 500, as in production
    return app


@pytest.fixture
def worker_app(tmp_path, database_url):
    app = make_app(tmp_path, database_url, "worker", "worker")
    yield app
    app.extensions["kwai_bridge.runtime"].engine.dispose()


@pytest.fixture
def request_app(tmp_path):
    """An app converting at once, on a SQLite file of its own: what the worker's
    conversion must come to, on either backend."""
    url = f"sqlite:///{tmp_path}/at-once.db"
    app = make_app(tmp_path, url, "request", "request")
    yield app
    app.extensions["kwai_bridge.runtime"].engine.dispose()


def pipeline_of(app) -> Pipeline:
    return app.extensions["kwai_bridge.pipeline"]


def engine_of(app):
    return app.extensions["kwai_bridge.runtime"].engine


def post(app, platform: str, topic: str, body: bytes, delivery_id: str | None = None):
    return deliver(app.test_client(), platform, topic, body, delivery_id=delivery_id, convert_now=False)


def events_of(app) -> list[tuple]:
    e = db.events.c
    with engine_of(app).connect() as conn:
        rows = conn.execute(select(e.store_id, e.business_key, e.event_name, e.status, e.event, e.click_source,
                                   e.identifiers, e.skip_reason, e.value_note, e.click_note)
                            .order_by(e.store_id, e.business_key)).all()
    return [tuple(row) for row in rows]


def outcomes_of(app) -> list[tuple[str, str]]:
    d = db.deliveries.c
    with engine_of(app).connect() as conn:
        return [tuple(r) for r in conn.execute(select(d.delivery_key, d.outcome).order_by(d.id))]


def paid_order(platform: str = "shopify", **changes) -> bytes:
    key = (platform, "orders/paid") if platform != "woocommerce" else (platform, "order.created")
    return body_of({**BASES[key], **changes})


# -- the answer and the events -------------------------------------------------------
def test_a_webhook_is_answered_received_and_its_events_come_from_the_converter(worker_app):
    answer = post(worker_app, "shopify", "orders/paid", paid_order(), delivery_id="d-1")
    assert answer.status_code == 200 and answer.get_json() == {"status": "received"}
    assert events_of(worker_app) == [] and outcomes_of(worker_app) == [("d-1", "received")]
    assert convert(worker_app) == 1
    assert outcomes_of(worker_app) == [("d-1", "queued")]
    assert [(r[2], r[3]) for r in events_of(worker_app)] == [("EVENT_PURCHASE", "unattributed")]
    assert convert(worker_app) == 0  # nothing waits any more


@pytest.mark.parametrize("platform, topic", CONVERTED_TOPICS, ids=[f"{p}-{t}" for p, t in CONVERTED_TOPICS])
def test_the_converter_makes_the_events_converting_at_once_makes(worker_app, request_app, platform, topic):
    body = body_of(BASES[platform, topic])
    later = post(worker_app, platform, topic, body, delivery_id="same-id")
    at_once = post(request_app, platform, topic, body, delivery_id="same-id")
    assert later.status_code == at_once.status_code == 200, (later.data, at_once.data)
    assert later.get_json()["status"] == "received"
    convert(worker_app)
    assert events_of(worker_app) == events_of(request_app)
    assert outcomes_of(worker_app) == outcomes_of(request_app)


def test_a_retry_is_a_duplicate_before_and_after_conversion(worker_app):
    body = paid_order(id=4401)
    assert post(worker_app, "shopify", "orders/paid", body, "w-1").get_json() == {"status": "received"}
    assert post(worker_app, "shopify", "orders/paid", body, "w-1").get_json() == {"status": "duplicate"}
    assert post(worker_app, "shopify", "orders/paid", body, "w-2").get_json() == {"status": "duplicate"}  # same body
    convert(worker_app)
    made = events_of(worker_app)
    assert made and len(outcomes_of(worker_app)) == 1
    assert post(worker_app, "shopify", "orders/paid", body, "w-1").get_json() == {"status": "duplicate"}
    convert(worker_app)
    assert events_of(worker_app) == made


def test_a_body_first_received_under_another_topic_still_gets_this_topics_events(worker_app, request_app):
    body = paid_order(id=4402)
    for app in (worker_app, request_app):
        post(app, "shopify", "orders/paid", body, "first")
        post(app, "shopify", "orders/create", body, "second")  # the same bytes under a body-decides topic
    convert(worker_app)
    assert events_of(worker_app) == events_of(request_app) != []


def test_a_cancellation_converted_in_the_same_batch_withdraws_the_order(worker_app, request_app):
    body = paid_order(id=4403)
    cancelled = paid_order(id=4403, cancelled_at="2026-12-01T12:05:00Z", financial_status="voided")
    for app in (worker_app, request_app):
        post(app, "shopify", "orders/paid", body)
        post(app, "shopify", "orders/cancelled", cancelled)
    convert(worker_app)
    assert events_of(worker_app) == events_of(request_app)
    assert any(row[3] == "skipped" for row in events_of(worker_app))


# -- faults ----------------------------------------------------------------------------
def test_poison_deliveries_are_settled_and_do_not_stop_the_others(worker_app):
    """Every poison payload of the request path's tests, received in one batch with good
    orders between them: each ends queued, ignored or failed, none stays received, and
    the good orders get their events."""
    good = []
    for n, case in enumerate(CASES):
        platform, topic, path, value, _expect = case.values
        answer = post(worker_app, platform, topic, body_of(changed(BASES[platform, topic], path, value)))
        assert answer.status_code < 500, answer.data
        key = f"good-{n}"
        post(worker_app, "shopify", "orders/paid", paid_order(id=900000 + n), delivery_id=key)
        good.append(key)
    convert(worker_app)
    outcomes = dict(outcomes_of(worker_app))
    assert "received" not in outcomes.values()
    assert {outcomes[key] for key in good} == {"queued"}
    e, d = db.events.c, db.deliveries.c
    with engine_of(worker_app).connect() as conn:
        with_events = set(conn.execute(select(d.delivery_key).join(db.events, e.delivery_id == d.id)).scalars())
    assert set(good) <= with_events


def test_a_database_failure_leaves_the_deliveries_received_for_the_next_pass(worker_app):
    post(worker_app, "shopify", "orders/paid", paid_order(id=4404), delivery_id="kept")
    engine = engine_of(worker_app)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE clicks RENAME TO clicks_away"))
    try:
        with pytest.raises(Exception) as raised:
            convert(worker_app)
        assert db.database_unavailable(raised.value) or "clicks" in str(raised.value)
        assert outcomes_of(worker_app) == [("kept", "received")] and events_of(worker_app) == []
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE clicks_away RENAME TO clicks"))
    assert convert(worker_app) == 1
    assert outcomes_of(worker_app) == [("kept", "queued")] and events_of(worker_app)


def test_a_conversion_fault_is_stored_failed_and_reprocessing_converts_it(worker_app):
    post(worker_app, "shopify", "orders/paid", paid_order(id=4405), delivery_id="faulty")
    pipeline = pipeline_of(worker_app)

    def broken(store, conversions, now):
        raise ValueError("attribution broke")

    faulty = Pipeline(registry=pipeline.registry, outbox=pipeline.outbox, resolver=broken, convert_later=True)
    assert faulty.convert_received(now=T0) == 1
    d = db.deliveries.c
    with engine_of(worker_app).connect() as conn:
        outcome, error = conn.execute(select(d.outcome, d.error)).one()
    assert (outcome, error) == ("failed", "ValueError: attribution broke") and events_of(worker_app) == []
    assert pipeline.reprocess(since=T0 - timedelta(days=1), store_id=None, now=T0)["reprocessed"] == 1
    assert events_of(worker_app)


def test_a_delivery_the_database_refuses_is_failed_alone_and_the_batch_goes_on(worker_app):
    """The values of one delivery's events cannot be stored (here: a lone surrogate the
    resolver put in a note, which neither driver encodes): the batch is stored one by
    one, that delivery as failed with the reason, the others with their events."""
    for n in range(3):
        post(worker_app, "shopify", "orders/paid", paid_order(id=4410 + n), delivery_id=f"b-{n}")
    pipeline = pipeline_of(worker_app)

    def hostile(store, conversions, now):
        return [replace(c, skip_reason="note \udc80") if "4411" in c.event.idempotency_key else c
                for c in pipeline.resolver(store, conversions, now)]

    Pipeline(registry=pipeline.registry, outbox=pipeline.outbox, resolver=hostile,
             convert_later=True).convert_received(now=T0)
    assert outcomes_of(worker_app) == [("b-0", "queued"), ("b-1", "failed"), ("b-2", "queued")]
    d = db.deliveries.c
    with engine_of(worker_app).connect() as conn:
        error = conn.execute(select(d.error).where(d.delivery_key == "b-1")).scalar_one()
    assert error.startswith("not stored: UnicodeEncodeError"), error
    assert len({row[1] for row in events_of(worker_app)}) == 2


def test_a_customer_redacted_before_conversion_gets_no_events(worker_app):
    """The redaction comes while the customer's order still waits for the converter: its
    body is removed, and the converter then makes nothing of it."""
    customer = {"id": 777001, "email": "jane@example.com"}
    post(worker_app, "shopify", "orders/paid", paid_order(id=4430, email="jane@example.com", customer=customer),
         delivery_id="waiting")
    post(worker_app, "shopify", "orders/paid", paid_order(id=4431), delivery_id="someone-else")
    redact = {**BASES["shopify", "customers/redact"], "customer": customer, "orders_to_redact": [4430]}
    assert post(worker_app, "shopify", "customers/redact", body_of(redact)).get_json()["status"] == "privacy"
    convert(worker_app)
    d = db.deliveries.c
    with engine_of(worker_app).connect() as conn:
        rows = dict(conn.execute(select(d.delivery_key, d.outcome).where(d.topic == "orders/paid")).all())
        error = conn.execute(select(d.error).where(d.delivery_key == "waiting")).scalar_one()
    assert rows == {"waiting": "ignored", "someone-else": "queued"}
    assert "privacy request" in error
    assert all("4430" not in row[1] for row in events_of(worker_app)) and events_of(worker_app)


# -- several converters ------------------------------------------------------------
def test_converters_racing_over_the_same_deliveries_make_each_event_once(worker_app, request_app):
    bodies = [paid_order(id=5000 + n, cart_token=f"cart-{n}") for n in range(40)]
    for n, body in enumerate(bodies):
        post(worker_app, "shopify", "orders/paid", body, delivery_id=f"r-{n}")
        post(request_app, "shopify", "orders/paid", body, delivery_id=f"r-{n}")
    pipeline = pipeline_of(worker_app)

    def race(_: int) -> None:
        while pipeline.convert_received(now=T0, limit=7):
            pass

    _, errors = at_once(race, range(4))
    assert errors == []
    assert events_of(worker_app) == events_of(request_app)
    assert {o for _, o in outcomes_of(worker_app)} == {"queued"}


@pytest.mark.postgres
def test_on_postgresql_converters_take_different_deliveries_and_do_not_hold_up_webhooks(tmp_path, postgres_url):
    app = make_app(tmp_path, postgres_url, "worker", "pg")
    body = paid_order(id=4420)
    post(app, "shopify", "orders/paid", body, delivery_id="locked-0")
    for n in range(1, 6):
        post(app, "shopify", "orders/paid", paid_order(id=4420 + n), delivery_id=f"locked-{n}")
    outbox = pipeline_of(app).outbox
    seen: dict[str, list[int]] = {}
    webhook: list = []

    def second_converter():
        with outbox.receiving(limit=10) as batch:
            seen["second"] = [d.id for d in batch]

    def second_topic():  # the same body under a body-decides topic adds events to delivery 0
        webhook.append(post(app, "shopify", "orders/create", body, delivery_id="again"))

    with outbox.receiving(limit=3) as batch:
        seen["first"] = [d.id for d in batch]
        for work in (second_converter, second_topic):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), f"{work.__name__} waited for the first converter's transaction"
    assert len(seen["first"]) == 3 and len(seen["second"]) == 3
    assert not set(seen["first"]) & set(seen["second"])
    assert webhook[0].status_code == 200
    app.extensions["kwai_bridge.runtime"].engine.dispose()


def test_two_settlements_of_one_delivery_store_its_events_once(worker_app):
    post(worker_app, "shopify", "orders/paid", paid_order(id=4406))
    pipeline = pipeline_of(worker_app)
    outbox = pipeline.outbox
    converted = [pipeline._convert_delivery(d, T0) for d in outbox.received(limit=10)]
    first = outbox.settle_received(converted, now=T0)
    second = outbox.settle_received(converted, now=T0)
    assert [r.duplicate for r in first] == [False] and first[0].created >= 1
    assert [(r.duplicate, r.created) for r in second] == [(True, 0)]
    assert len(events_of(worker_app)) == first[0].created


def test_the_worker_thread_converts_what_arrives_and_stops_when_told(worker_app):
    stop = threading.Event()
    threads = Converter(pipeline_of(worker_app), clock=lambda: T0, idle_wait=0.01).start(stop)
    assert len(threads) == (4 if engine_of(worker_app).dialect.name == "postgresql" else 1)
    try:
        post(worker_app, "shopify", "orders/paid", paid_order(id=4407), delivery_id="live")
        deadline = time.monotonic() + 10
        while outcomes_of(worker_app) != [("live", "queued")] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outcomes_of(worker_app) == [("live", "queued")], "the converter did not convert within 10 s"
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads)


# -- keeping and migrating -------------------------------------------------------------
def test_pruning_keeps_a_received_delivery_and_its_body_until_converted(worker_app):
    post(worker_app, "shopify", "orders/paid", paid_order(id=4408), delivery_id="old")
    outbox = pipeline_of(worker_app).outbox
    outbox.prune(now=T0 + timedelta(days=400), rest=lambda seconds: None)
    d = db.deliveries.c
    with engine_of(worker_app).connect() as conn:
        assert conn.execute(select(d.outcome, d.body.is_not(None))).all() == [("received", True)]
    convert(worker_app)
    assert events_of(worker_app)


def test_migration_9_lets_a_version_8_database_store_received_deliveries(database_url):
    engine = db.make_engine(database_url)
    old = MetaData()
    table = db.deliveries.to_metadata(old)
    for constraint in [c for c in table.constraints if c.name == "ck_deliveries_outcome"]:
        table.constraints.remove(constraint)
    table.append_constraint(CheckConstraint(
        "outcome IN ('queued', 'ignored', 'failed', 'reprocessed', 'privacy')", name="ck_deliveries_outcome"))
    table.indexes = {index for index in table.indexes if index.name != "ix_deliveries_received"}
    values = dict(store_id="s", platform="shopify", topic="orders/paid", received_at=T0)
    with engine.begin() as conn:  # the deliveries table as version 8 made it
        old.create_all(conn)
    for version, step in db.MIGRATIONS:
        if version <= 8:
            with engine.begin() as conn:
                step(conn)
    with engine.begin() as conn:
        db.schema_version.create(conn)
        conn.execute(db.schema_version.insert().values(version=8))
        conn.execute(db.deliveries.insert().values(delivery_key="before", outcome="queued", **values))
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(db.deliveries.insert().values(delivery_key="too-early", outcome="received", **values))
    assert db.migrate(engine) == db.SCHEMA_VERSION
    assert db.migrate(engine) == db.SCHEMA_VERSION  # a second run changes nothing
    with engine.begin() as conn:
        conn.execute(db.deliveries.insert().values(delivery_key="after", outcome="received", **values))
    with pytest.raises(IntegrityError):  # the check still refuses what is not an outcome
        with engine.begin() as conn:
            conn.execute(db.deliveries.insert().values(delivery_key="bad", outcome="bogus", **values))
    assert "ix_deliveries_received" in {i["name"] for i in inspect(engine).get_indexes("deliveries")}
    with engine.connect() as conn:
        kept = conn.execute(select(db.deliveries.c.delivery_key).order_by(db.deliveries.c.id)).scalars().all()
    assert kept == ["before", "after"]
    engine.dispose()


def test_the_conversion_setting():
    assert settings_from_env({}).conversion == "worker"
    assert settings_from_env({"KWAI_BRIDGE_CONVERSION": "Request"}).conversion == "request"
    with pytest.raises(Exception, match="must be one of worker, request"):
        settings_from_env({"KWAI_BRIDGE_CONVERSION": "later"})
