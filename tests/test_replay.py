"""Signed bodies replayed: the platforms sign the body, not the topic or shop headers, so a
captured body re-sent under another topic, another webhook id or another shop's header
must be refused or answered `duplicate`, and change nothing. Legitimate deliveries (every
sample, and one body sent byte for byte under several order topics) still count.

A conversion topic's body is read by the worker when it converts (the default): there a
replay is stored unread and refused by the conversion (failed, with the reason, no
event) where converting at the request refuses it in the answer; both are tested."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from kwai_bridge import db
from kwai_bridge.attribution import ClickStore
from server import create_app
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
STORES = {"shopify": "acme", "shopline": "line", "woocommerce": "woo"}
#: Another store of the same app: the app's one secret signs its deliveries too.
OTHER = {"shopify": ("other", "other.myshopify.com"), "shopline": ("other-line", "other.myshopline.com")}
ORDER_SAMPLES = {"shopify": "shopify/shopify_orders_create.json",
                 "shopline": "shopline/shopline_orders_create.DERIVED_FROM_SDK.json"}


def sample(path: str, platform: str = "shopify") -> dict:
    return json.loads(fixture_bytes(path, shop=SHOPS[platform]))


def paid_order(platform: str = "shopify", **changes) -> bytes:
    order = {**sample(ORDER_SAMPLES[platform], platform), "test": False, "financial_status": "paid",
             "customer": {"id": 191167, "email": "john@example.com"}, "email": "john@example.com",
             "cart_token": "cart-A", **changes}
    return json.dumps(order).encode()


@pytest.fixture
def conversion() -> str:
    """KWAI_BRIDGE_CONVERSION: the service's default; the tests where it matters take both."""
    return "worker"


@pytest.fixture
def app(tmp_path, database_url, conversion):
    entries = [store_entry("shopify", "acme"), store_entry("shopline", "line"), store_entry("woocommerce", "woo")]
    entries += [store_entry(p, store_id, shop=shop) for p, (store_id, shop) in OTHER.items()]
    stores = write_stores(tmp_path / "stores.toml", entries)
    db.migrate(db.make_engine(database_url))
    return create_app({"DATABASE_URL": database_url, "STORES": str(stores), "CONVERSION": conversion},
                      clock=lambda: T0)


BOTH_WAYS = pytest.mark.parametrize("conversion", ["worker", "request"])
#: What a refused replay must not change, where it is stored (converted later) or not.
UNCHANGED = ("events", "identifiers", "clicks")


def post(app, platform: str, topic: str, body: bytes, *, store: str | None = None, shop: str | None = None,
         delivery_id: str | None = None):
    """Sign `body` with the platform's (app-wide) secret and post it under `topic`; a new
    webhook id each time unless `delivery_id` is given."""
    headers = headers_for(platform, topic, shop=shop or SHOPS[platform], secret=SECRETS[platform], body=body,
                          delivery_id=delivery_id or uuid.uuid4().hex[:24])
    answer = app.test_client().post(f"/webhooks/{platform}/{store or STORES[platform]}", data=body, headers=headers)
    convert(app)  # the worker's converter, moments later
    return answer


def state(app) -> dict:
    """What a replay could change: events (name, whether they keep identifiers), kept
    bodies, deliveries, and the clicks kept for customer A."""
    engine = app.extensions["kwai_bridge.runtime"].engine
    e, d = db.events.c, db.deliveries.c
    with engine.connect() as conn:
        events = sorted((r.store_id, r.business_key, r.identifiers is not None)
                        for r in conn.execute(select(e.store_id, e.business_key, e.identifiers)))
        bodies = conn.execute(select(func.count()).where(d.body.is_not(None), d.body != b"")).scalar()
        deliveries = conn.execute(select(func.count()).select_from(db.deliveries)).scalar()
        identifiers = conn.execute(select(func.count()).select_from(db.event_identifiers)).scalar()
    clicks = ClickStore(engine).lookup("acme", {"cart_token": "cart-A"}, since=T0)
    return {"events": events, "bodies": bodies, "deliveries": deliveries, "identifiers": identifiers,
            "clicks": sorted(clicks)}


def refused(app, answer, before: dict, status: int, reason: str) -> None:
    """The replay `answer` was refused: converting at the request, with `status` and
    `reason` and nothing stored; converted later, stored unread (or a duplicate of a
    body stored already) and refused by the worker: failed with the status and reason.
    Either way no event, identifier or click changed."""
    after = state(app)
    assert {k: after[k] for k in UNCHANGED} == {k: before[k] for k in UNCHANGED}
    if app.extensions["kwai_bridge.pipeline"].convert_later:
        assert answer.status_code == 200 and answer.json["status"] in ("received", "duplicate"), answer.json
        if answer.json["status"] == "received":
            d = db.deliveries.c
            with app.extensions["kwai_bridge.runtime"].engine.connect() as conn:
                outcome, error = conn.execute(select(d.outcome, d.error).order_by(d.id.desc()).limit(1)).one()
            assert outcome == "failed" and error.startswith(f"refused ({status}): ") and reason in error, error
            assert after["deliveries"] == before["deliveries"] + 1
        return
    assert answer.status_code == status, answer.json
    assert reason in answer.json["status"]
    assert after == before


def populated(app) -> bytes:
    """A store with a paid order, its click, and the order's body kept; the order's body."""
    body = paid_order()
    assert post(app, "shopify", "orders/paid", body).json["status"] in ("received", "queued")
    assert app.test_client().post("/clicks/acme", json={"click_id": "CA", "cart_token": "cart-A"},
                                    headers={"Origin": f"https://{SHOPS['shopify']}"}).status_code == 202
    return body


# -- the replays the finding lists ---------------------------------------------------------
@pytest.mark.parametrize("topic", ["shop/redact", "customers/redact", "customers/data_request"])
def test_an_order_body_replayed_as_a_privacy_topic_redacts_nothing(app, topic):
    body = populated(app)
    before = state(app)
    answer = post(app, "shopify", topic, body)
    assert answer.status_code == 400, answer.json
    assert "not a " + topic in answer.json["status"]
    assert state(app) == before


@BOTH_WAYS
@pytest.mark.parametrize("platform", ["shopify", "shopline"])
@pytest.mark.parametrize("topic", ["customers/create", "checkouts/create", "carts/create", "carts/update"])
def test_an_order_body_replayed_under_another_conversion_topic_adds_nothing(app, platform, topic):
    body = paid_order(platform)
    assert post(app, platform, "orders/paid", body).status_code == 200
    before = state(app)
    refused(app, post(app, platform, topic, body), before, 400, f"not a {topic} body")


@BOTH_WAYS
@pytest.mark.parametrize("topic", ["customers/create", "checkouts/create", "carts/update"])
def test_an_order_body_first_seen_under_another_conversion_topic_adds_nothing(app, topic):
    """A captured order body sent under another topic before its order's own delivery."""
    before = state(app)
    refused(app, post(app, "shopify", topic, paid_order()), before, 400, f"not a {topic} body")


@pytest.mark.parametrize("topic", ["orders/paid", "orders/updated", "orders/create"])
def test_an_order_body_replayed_under_a_new_webhook_id_is_a_duplicate(app, topic):
    body = populated(app)
    before = state(app)
    answer = post(app, "shopify", "orders/paid", body)
    assert (answer.status_code, answer.json["status"]) == (200, "duplicate")
    if topic != "orders/create":  # orders/create is the one order topic that may still add (below)
        answer = post(app, "shopify", topic, body)
        assert (answer.status_code, answer.json["status"]) == (200, "duplicate")
    assert state(app) == before


def test_a_pending_order_replayed_as_orders_paid_is_no_purchase(app):
    body = paid_order(financial_status="pending")
    assert post(app, "shopify", "orders/create", body).json["status"] == "received"
    before = state(app)
    answer = post(app, "shopify", "orders/paid", body)
    assert (answer.status_code, answer.json) == (200, {"status": "duplicate"})
    assert state(app) == before
    assert [key for _, key, _ in before["events"]] == ["order:820982911946154508:EVENT_PLACE_ORDER"]


@BOTH_WAYS
@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_a_body_signed_for_one_store_is_refused_for_another_store_of_the_app(app, platform):
    other, other_shop = OTHER[platform]
    body = paid_order(platform)  # names the store's own shop in order_status_url
    for url_store, header in ((other, other_shop), (None, other_shop)):  # its route, and the shared route
        before = state(app)
        if url_store is None:
            headers = headers_for(platform, "orders/paid", shop=header, secret=SECRETS[platform], body=body)
            answer = app.test_client().post(f"/webhooks/{platform}", data=body, headers=headers)
            convert(app)
        else:
            answer = post(app, platform, "orders/paid", body, store=url_store, shop=header)
        refused(app, answer, before, 401, "names another shop")
    assert state(app)["events"] == []
    # the same body is the store's own: accepted
    assert post(app, platform, "orders/paid", body).status_code == 200
    assert [store for store, _, _ in state(app)["events"]] == [STORES[platform]]


@pytest.mark.parametrize("topic", ["shop/redact", "customers/redact", "customers/data_request"])
def test_a_privacy_request_naming_another_shop_is_refused(app, topic):
    populated(app)
    before = state(app)
    name = {"shop/redact": "shop_redact", "customers/redact": "customers_redact",
            "customers/data_request": "customers_data_request"}[topic]
    body = fixture_bytes(f"shopify/shopify_{name}.json", shop="other.myshopify.com")
    answer = post(app, "shopify", topic, body)
    assert answer.status_code == 401, answer.json
    assert state(app) == before


@pytest.mark.parametrize("body_of, topic", [
    ("customers_redact", "shop/redact"), ("customers_data_request", "customers/redact"),
    ("shop_redact", "customers/redact"), ("customers_redact", "customers/data_request"),
])
def test_one_privacy_request_replayed_as_another_is_refused(app, body_of, topic):
    populated(app)
    before = state(app)
    body = fixture_bytes(f"shopify/shopify_{body_of}.json", shop=SHOPS["shopify"])
    answer = post(app, "shopify", topic, body)
    assert answer.status_code == 400, answer.json
    assert state(app) == before


def test_a_shop_redaction_replayed_later_redacts_nothing_new(app):
    body = fixture_bytes("shopify/shopify_shop_redact.json", shop=SHOPS["shopify"])
    assert post(app, "shopify", "shop/redact", body).json["status"] == "privacy"
    populated(app)  # the shop installed the app again and sells
    before = state(app)
    assert before["clicks"] == ["cart_token"] and before["bodies"] == 1
    answer = post(app, "shopify", "shop/redact", body)  # the captured request, a new webhook id
    assert (answer.status_code, answer.json["status"]) == (200, "duplicate")
    assert state(app) == before


@BOTH_WAYS
def test_a_woocommerce_order_replayed_as_a_customer_adds_nothing(app):
    order = sample("woocommerce/woocommerce_order_created.json", "woocommerce")
    body = json.dumps(order).encode()
    assert post(app, "woocommerce", "order.created", body).status_code == 200
    before = state(app)
    refused(app, post(app, "woocommerce", "customer.created", body), before, 400, "not a customer.created body")
    assert post(app, "woocommerce", "order.updated", body).json["status"] == "duplicate"
    assert {k: state(app)[k] for k in UNCHANGED} == {k: before[k] for k in UNCHANGED}


# -- legitimate deliveries ------------------------------------------------------------------
@pytest.mark.parametrize("first, then", [("orders/paid", "orders/create"), ("orders/create", "orders/paid"),
                                         ("orders/updated", "orders/create"), ("orders/paid", "orders/updated")])
def test_one_body_under_several_order_topics_loses_no_conversion(app, first, then):
    """An order created paid: Shopify may send the same bytes under orders/create,
    orders/paid and orders/updated, in any order. The second is a duplicate of the first,
    yet orders/create's EVENT_PLACE_ORDER is not lost when orders/paid came first."""
    body = paid_order()
    assert post(app, "shopify", first, body).status_code == 200
    answer = post(app, "shopify", then, body)
    assert (answer.status_code, answer.json["status"]) == (200, "duplicate")
    assert post(app, "shopify", then, body).json == {"status": "duplicate"}, "a third time adds nothing"
    keys = [key for _, key, _ in state(app)["events"]]
    expected = ["order:820982911946154508:EVENT_PURCHASE"]
    if "orders/create" in (first, then):
        expected.insert(0, "order:820982911946154508:EVENT_PLACE_ORDER")
    assert keys == expected
    assert state(app)["deliveries"] == 1


@pytest.mark.parametrize("first, then", [("order.updated", "order.created"), ("order.created", "order.updated")])
def test_a_woocommerce_order_sent_as_created_and_updated_loses_no_conversion(app, first, then):
    body = fixture_bytes("woocommerce/woocommerce_order_created.json")  # processing, paid
    assert post(app, "woocommerce", first, body).status_code == 200
    assert post(app, "woocommerce", then, body).json["status"] == "duplicate"
    assert [key for _, key, _ in state(app)["events"]] == ["order:727:EVENT_PLACE_ORDER", "order:727:EVENT_PURCHASE"]


EVERY_SAMPLE = [
    ("shopify", "orders/create", "shopify/shopify_orders_create.json", "skipped test order"),
    ("shopify", "orders/paid", "shopify/shopify_orders_create.json", None),
    ("shopify", "orders/updated", "shopify/shopify_orders_create.json", None),
    ("shopify", "checkouts/create", "shopify/shopify_checkouts_create.json", None),
    ("shopify", "carts/create", "shopify/shopify_carts_create.json", None),
    ("shopify", "carts/update", "shopify/shopify_carts_create.json", None),
    ("shopify", "customers/data_request", "shopify/shopify_customers_data_request.json", None),
    ("shopify", "customers/redact", "shopify/shopify_customers_redact.json", None),
    ("shopify", "shop/redact", "shopify/shopify_shop_redact.json", None),
    ("shopify", "order_transactions/create", "shopify/shopify_order_transactions_create.json", None),
    ("shopify", "refunds/create", "shopify/shopify_refunds_create.json", None),
    ("shopline", "orders/create", "shopline/shopline_orders_create.DERIVED_FROM_SDK.json", None),
    ("shopline", "orders/paid", "shopline/shopline_orders_create.DERIVED_FROM_SDK.json", None),
    ("shopline", "checkouts/create", "shopline/shopline_checkouts_create.DERIVED_FROM_SDK.json", None),
    ("shopline", "customers/create", "shopline/shopline_customers_update_docs_overview.json", None),
    ("shopline", "customers/update", "shopline/shopline_customers_update_docs_overview.json", None),
    ("shopline", "order_attribution/create", "shopline/shopline_order_attribution_info_rest.json", None),
    ("woocommerce", "order.created", "woocommerce/woocommerce_order_created.json", None),
    ("woocommerce", "order.updated", "woocommerce/woocommerce_order_created.json", None),
    ("woocommerce", "action.woocommerce_add_to_cart",
     "woocommerce/woocommerce_action_woocommerce_add_to_cart.DERIVED_FROM_CODE.json", None),
]


@pytest.mark.parametrize("platform, topic, path, _note", EVERY_SAMPLE,
                         ids=[f"{p}-{t}" for p, t, _, _ in EVERY_SAMPLE])
def test_every_sample_is_still_accepted_under_its_own_topic(app, platform, topic, path, _note):
    answer = post(app, platform, topic, fixture_bytes(path, shop=SHOPS[platform]))
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] in ("received", "privacy"), answer.json
    with app.extensions["kwai_bridge.runtime"].engine.connect() as conn:  # and converted, not failed
        outcome = conn.execute(select(db.deliveries.c.outcome)).scalar_one()
    assert outcome in ("queued", "ignored", "privacy"), outcome
