"""The admin API's read side (kwai_bridge.records) on a real outbox, SQLite and PostgreSQL:
pages, filters, tenants, one event in detail after real sends, health, replays."""
from __future__ import annotations

import json
from datetime import timedelta
from random import Random

import pytest
from sqlalchemy import inspect, select, text

from kwai_bridge import db
from kwai_bridge.db import EventStatus, events, migrate
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.outbox import Outbox
from kwai_bridge.records import MAX_LIMIT, BadQuery, Records, pages
from kwai_bridge.worker import Dispatcher
from tests.records_data import STORES, T0, accept, conversion, fill, set_status
from tests.serving import registry_for, store_entry, write_stores
from tests.outbox_helpers import engine  # noqa: F401  (a fixture: a migrated database)


@pytest.fixture
def outbox(engine):
    return Outbox(engine)


def _all(engine, **where) -> list[dict]:
    with engine.connect() as conn:
        stmt = select(events).order_by(events.c.id.desc())
        for name, value in where.items():
            stmt = stmt.where(events.c[name] == value)
        return [dict(m) for m in conn.execute(stmt).mappings()]


def _walk(records: Records, *, limit: int, between=lambda: None, **filters) -> list[int]:
    seen, cursor = [], None
    while True:
        page = records.events(cursor=cursor, limit=limit, **filters)
        assert len(page.items) <= limit
        seen += [item["id"] for item in page.items]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor
        between()


# -- pages -------------------------------------------------------------------------
@pytest.mark.parametrize("stores, ranges", [
    (None, pages.PER_STORE_RANGES), (["acme"], pages.PER_STORE_RANGES),
    (["acme", "woo"], pages.PER_STORE_RANGES),  # one index range per store, merged
    (["acme", "woo"], 1),  # a long list of stores: one scan filtered
])
def test_pages_hold_every_event_once_while_new_ones_arrive(engine, outbox, monkeypatch, stores, ranges):
    monkeypatch.setattr(pages, "PER_STORE_RANGES", ranges)
    fill(outbox, 60)
    before = [row["id"] for row in _all(engine) if stores is None or row["store_id"] in stores]
    arriving = iter(range(1000, 2000, 3))
    seen = _walk(Records(engine), limit=7, stores=stores,
                 between=lambda: fill(outbox, 3, start=next(arriving)))
    assert seen == before  # newest first, no gap, no repeat; what arrived meanwhile is on a new first page
    newest = Records(engine).events(stores=stores, limit=1).items[0]["id"]
    assert newest > before[0]


def test_a_page_is_exactly_full_and_the_last_has_no_cursor(engine, outbox):
    fill(outbox, 10)
    first = Records(engine).events(stores=None, limit=5)
    second = Records(engine).events(stores=None, limit=5, cursor=first.next_cursor)
    assert [i["id"] for i in first.items] == [10, 9, 8, 7, 6] and first.next_cursor
    assert [i["id"] for i in second.items] == [5, 4, 3, 2, 1] and second.next_cursor is None


@pytest.mark.parametrize("kwargs, message", [
    ({"limit": 0}, "limit must be"), ({"limit": MAX_LIMIT + 1}, "limit must be"), ({"limit": True}, "limit must"),
    ({"cursor": "!!"}, "cursor"), ({"cursor": "LTE"}, "cursor"),  # "-1"
    ({"status": "lost"}, "status must be one of"), ({"since": T0.replace(tzinfo=None)}, "time zone"),
])
def test_a_page_asked_for_wrongly_is_refused(engine, kwargs, message):
    with pytest.raises(BadQuery, match=message) as refused:
        Records(engine).events(stores=None, **kwargs)
    assert isinstance(refused.value, ValueError) and refused.value.status_code == 400


# -- filters -----------------------------------------------------------------------
def test_each_filter_keeps_exactly_its_events(engine, outbox):
    fill(outbox, 30, at=T0 - timedelta(days=2))
    fill(outbox, 30, start=30)
    set_status(engine, [3, 9, 33, 40], EventStatus.DEAD)
    records = Records(engine)
    rows = _all(engine)

    def ids(**filters) -> list[int]:
        return _walk(records, limit=4, **filters)

    assert ids(stores=None, status="dead") == [40, 33, 9, 3]
    assert ids(stores=["acme"], status="dead") == [r["id"] for r in rows
                                                   if r["status"] == "dead" and r["store_id"] == "acme"]
    assert ids(stores=None, event_name="EVENT_ADD_TO_CART") == [r["id"] for r in rows
                                                               if r["event_name"] == "EVENT_ADD_TO_CART"]
    assert ids(stores=None, since=T0) == [r["id"] for r in rows if r["created_at"] >= T0]
    assert ids(stores=None, order="7") == [8]  # the order id the event carries (order 7 is the 8th)
    assert ids(stores=["woo"], order="7") == []  # order 7 is the shopline store's
    assert ids(stores=None, order="nosuch") == []
    assert ids(stores=None, status="pending", event_name="EVENT_PURCHASE", since=T0) == [
        r["id"] for r in rows if r["status"] == "pending" and r["event_name"] == "EVENT_PURCHASE"
        and r["created_at"] >= T0]


def test_the_order_filter_finds_every_event_of_the_order(engine, outbox):
    accept(outbox, "acme", "d1", conversion("shopify", "order:77:EVENT_PLACE_ORDER", name="EVENT_PLACE_ORDER",
                                            order_id="77"),
           conversion("shopify", "order:77:EVENT_PURCHASE", order_id="77"))
    accept(outbox, "woo", "d2", conversion("woocommerce", "order:77:EVENT_PURCHASE", order_id="77"))
    assert [i["business_key"] for i in Records(engine).events(stores=["acme"], order="77").items] == [
        "order:77:EVENT_PURCHASE", "order:77:EVENT_PLACE_ORDER"]
    assert [i["store"] for i in Records(engine).events(stores=None, order="77").items] == ["woo", "acme", "acme"]


def test_deliveries_page_by_outcome_and_store(engine, outbox):
    fill(outbox, 12)
    with engine.begin() as conn:
        conn.execute(text("UPDATE deliveries SET outcome = 'failed', error = 'bad json' WHERE id IN (2, 5, 11)"))
    records = Records(engine)
    failed = records.deliveries(stores=None, outcome="failed", limit=2)
    rest = records.deliveries(stores=None, outcome="failed", limit=2, cursor=failed.next_cursor)
    assert [d["id"] for d in failed.items + rest.items] == [11, 5, 2] and rest.next_cursor is None
    assert failed.items[0] == {"id": 11, "store": "line", "platform": "shopline", "topic": "orders/paid",
                               "delivery_key": "d10", "received_at": T0.isoformat(), "outcome": "failed",
                               "error": "bad json"}
    assert [d["id"] for d in records.deliveries(stores=["line"], outcome="failed").items] == [11, 5, 2]
    assert records.deliveries(stores=["acme"], outcome="failed").items == []
    with pytest.raises(BadQuery, match="outcome must be one of"):
        records.deliveries(stores=None, outcome="lost")


# -- tenants -----------------------------------------------------------------------
def test_another_tenants_ids_behave_as_missing_ones(engine, outbox, tmp_path):
    fill(outbox, 9)
    registry = registry_for(engine, write_stores(tmp_path / "stores.toml",
                                                 [store_entry(p, s) for s, p in STORES.items()]))
    set_status(engine, [1, 2, 3], EventStatus.DEAD)
    records, mine = Records(engine), ["acme"]
    theirs = [r for r in _all(engine) if r["store_id"] != "acme"]
    assert {i["store"] for i in records.events(stores=mine, limit=MAX_LIMIT).items} == {"acme"}
    assert records.events(stores=[], limit=MAX_LIMIT).items == []
    assert {d["store"] for d in records.deliveries(stores=mine).items} == {"acme"}
    for row in theirs:
        assert records.event(row["id"], stores=mine, registry=registry) is None
        assert records.delivery(row["delivery_id"], stores=mine) is None
    assert records.event(10_000, stores=None, registry=registry) is None
    assert records.delivery(10_000, stores=None) is None
    # Replays: events of another store are not counted and do not move.
    assert records.replay(now=T0, stores=mine, event_id=2) == 0
    assert records.replay(now=T0, stores=mine, store_id="line") == 0
    assert records.replay(now=T0, stores=mine) == 1  # acme's event 1 only
    assert [r["status"] for r in _all(engine) if r["id"] in (1, 2, 3)] == ["dead", "dead", "pending"]
    assert records.replay(now=T0, stores=None) == 2


# -- one event in detail, after real sends ----------------------------------------
def test_event_detail_holds_the_body_sent_every_attempt_and_the_delivery(engine, outbox, tmp_path, kwai):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme", access_token="tok-secret-a1b2"),
                                                     store_entry("woocommerce", "woo", send_method="get")])
    registry = registry_for(engine, stores)
    delivery = accept(outbox, "acme", "d1", conversion("shopify", "order:1:EVENT_PURCHASE", order_id="1",
                                                       click_id="CLICK.abc"), body=b'{"id": 12345}')
    accept(outbox, "woo", "d2", conversion("woocommerce", "order:2:EVENT_PURCHASE", order_id="2"))
    accept(outbox, "woo", "d3", conversion("woocommerce", "order:3:EVENT_PURCHASE", click_id=None, source=None))

    class Clock:
        now = T0

        def __call__(self):
            return self.now

    clock = Clock()
    client = KwaiClient(kwai.base_url, read_timeout=2)
    dispatcher = Dispatcher(outbox=outbox, registry=registry, client=client, concurrency=1, clock=clock,
                            rng=Random(3))
    kwai.fail_next(1)  # HTTP 503 first: retried later
    dispatcher.run(once=True)
    clock.now = T0 + timedelta(hours=1)
    dispatcher.run(once=True)
    client.close()
    sent = [r for r in kwai.received if r.fields.get("clickid") == "CLICK.abc"]
    assert [r.status for r in sent] == [503, 200]

    item = Records(engine).event(1, stores=["acme"], registry=registry)
    assert item["status"] == "sent" and item["attempt_count"] == 2 and item["store"] == "acme"
    body = item["sent_body"]
    assert body == {**sent[-1].fields, "access_token": "…a1b2"}  # exactly what went out, token masked
    assert "tok-secret-a1b2" not in json.dumps(item)
    assert json.loads(item["kwai_answer"])["result"] == 1
    assert [(a["status"], a["result"]) for a in item["attempts"]] == [("pending", None), ("sent", 1)]
    assert item["attempts"][0]["at"] == T0.isoformat() and "503" in item["attempts"][0]["error"]
    assert item["delivery"] == {"id": delivery, "topic": "orders/paid", "received_at": T0.isoformat(),
                                "outcome": "queued", "delivery_key": "d1"}
    assert item["click"] == {"id": "CLICK.abc", "source": "attribute", "note": None}

    by_get = Records(engine).event(2, stores=None, registry=registry)
    assert by_get["sent_body"]["trackFlag"] == "false" and by_get["sent_body"]["pixelId"] == "pixel-woocommerce"
    waiting = Records(engine).event(3, stores=None, registry=registry)
    assert waiting["status"] == "unattributed" and waiting["sent_body"] is None and waiting["attempts"] == []

    shown = Records(engine).delivery(delivery, stores=["acme"])
    assert shown["headers"] == {"x-shopify-topic": "orders/paid"}  # the signature was never kept
    assert (shown["body_retained"], shown["body_size"], shown["event_ids"]) == (True, len(b'{"id": 12345}'), [1])
    assert "body" not in shown
    outbox.prune(now=T0 + timedelta(days=8))
    shown = Records(engine).delivery(delivery, stores=["acme"])
    assert (shown["body_retained"], shown["body_size"]) == (False, None)


# -- health ------------------------------------------------------------------------
def test_store_health_on_a_known_data_set(engine, outbox):
    now = T0 + timedelta(hours=2)
    old = T0 - timedelta(days=3)
    accept(outbox, "acme", "o1", conversion("shopify", "order:1:EVENT_PURCHASE"), at=old)  # outside 24 h
    accept(outbox, "acme", "o2", conversion("shopify", "order:2:EVENT_PURCHASE", click_id=None), at=old)
    accept(outbox, "acme", "o3", conversion("shopify", "order:3:EVENT_PURCHASE"),
           at=T0 - timedelta(days=8))  # outside 7 days too
    accept(outbox, "acme", "n1", conversion("shopify", "order:4:EVENT_PURCHASE"), at=T0)
    accept(outbox, "acme", "n2", conversion("shopify", "checkout:5:EVENT_INITIATED_CHECKOUT",
                                            name="EVENT_INITIATED_CHECKOUT"), at=T0 + timedelta(hours=1),
           topic="checkouts/create")
    accept(outbox, "acme", "n3", conversion("shopify", "order:6:EVENT_PURCHASE", click_id=None), at=T0)
    accept(outbox, "woo", "w1", conversion("woocommerce", "order:1:EVENT_PURCHASE"), at=T0)  # another store
    set_status(engine, [1], EventStatus.HELD, last_error="Kwai refused the access token", last_result=10006)
    set_status(engine, [4], EventStatus.SENT, sent_at=T0)
    with engine.begin() as conn:
        conn.execute(text("UPDATE deliveries SET outcome = 'ignored' WHERE delivery_key = 'n2'"))

    health = Records(engine).store_health("acme", now=now)
    assert health == {
        "store": "acme",
        "at": now.isoformat(),
        "last_delivery": {"checkouts/create": (T0 + timedelta(hours=1)).isoformat(), "orders/paid": T0.isoformat()},
        "deliveries_24h": {"queued": 2, "ignored": 1, "failed": 0, "reprocessed": 0, "privacy": 0, "received": 0},
        "events_24h": {"unattributed": 1, "skipped": 0, "pending": 1, "sending": 0, "sent": 1, "held": 0, "dead": 0},
        "held": {"held": True, "events": 1, "last_error": "Kwai refused the access token", "last_result": 10006},
        "oldest_pending_age_seconds": 8 * 86400 + 2 * 3600,  # order 3, pending since eight days
        # purchases of the last 7 days: 1 (held, with a click), 2 (none), 4 (sent), 6 (none)
        "attribution_7d": {"purchases": 4, "attributed": 2, "share": 0.5},
    }
    quiet = Records(engine).store_health("nosuch", now=now)
    assert quiet["last_delivery"] == {} and quiet["oldest_pending_age_seconds"] is None
    assert quiet["attribution_7d"] == {"purchases": 0, "attributed": 0, "share": None}
    assert not quiet["held"]["held"] and set(quiet["events_24h"].values()) == {0}


# -- replay ------------------------------------------------------------------------
def _statuses(engine) -> dict[int, tuple]:
    return {r["id"]: (r["status"], r["next_attempt_at"], r["attempts"]) for r in _all(engine)}


@pytest.mark.parametrize("kwargs, moved", [
    ({}, {1, 2, 3}),  # dead and held, by default
    ({"status": "dead"}, {1, 3}),
    ({"status": "held"}, {2}),
    ({"result": 10006}, {2, 3}),
    ({"store_id": "acme"}, {1}),
    ({"event_id": 3}, {3}),
    ({"event_id": 4}, {4}),  # pending, waiting out its back-off: retry now
    ({"event_id": 5}, set()),  # sent: nothing to do
    ({"event_id": 6}, set()),  # pending and due already
])
def test_replay_rules(engine, outbox, kwargs, moved):
    fill(outbox, 7)
    later = T0 + timedelta(hours=5)
    set_status(engine, [1, 3], EventStatus.DEAD, attempts=10, last_error="gave up")
    set_status(engine, [2], EventStatus.HELD, attempts=1, last_result=10006)
    set_status(engine, [3], EventStatus.DEAD, last_result=10006)
    set_status(engine, [4], EventStatus.PENDING, attempts=3, next_attempt_at=later)
    set_status(engine, [5], EventStatus.SENT, attempts=1, next_attempt_at=None)
    set_status(engine, [6, 7], EventStatus.PENDING, attempts=0, next_attempt_at=T0)
    before = _statuses(engine)
    now = T0 + timedelta(minutes=1)
    assert Records(engine).replay(now=now, stores=None, **kwargs) == len(moved)
    after = _statuses(engine)
    for event_id, was in before.items():
        if event_id not in moved:
            assert after[event_id] == was
        elif was[0] == "pending":
            assert after[event_id] == ("pending", now, was[2])  # attempts kept: its schedule goes on
        else:
            assert after[event_id] == ("pending", now, 0)  # from scratch
    assert Records(engine).replay(now=now, stores=None, **kwargs) == 0  # nothing left to move


def test_replay_refuses_a_status_it_does_not_move(engine):
    with pytest.raises(BadQuery, match="status must be one of dead, held"):
        Records(engine).replay(now=T0, stores=None, status="sent")


# -- schema v5 ---------------------------------------------------------------------
def test_migration_5_indexes_a_version_4_database(engine):
    with engine.begin() as conn:  # as release 4 left it: (store_id, status), none of v5's
        for name in ("ix_events_store_status_id", "ix_events_status_id", "ix_deliveries_store_id"):
            conn.execute(text(f"DROP INDEX {name}"))
        conn.execute(text("CREATE INDEX ix_events_store_status ON events (store_id, status)"))
        conn.execute(db.schema_version.update().values(version=4))
    migrate(engine)
    assert {i["name"] for i in inspect(engine).get_indexes("events")} >= {
        "ix_events_store_status_id", "ix_events_status_id"}
    assert "ix_events_store_status" not in {i["name"] for i in inspect(engine).get_indexes("events")}
    assert "ix_deliveries_store_id" in {i["name"] for i in inspect(engine).get_indexes("deliveries")}
