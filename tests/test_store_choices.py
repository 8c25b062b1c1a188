"""What a store chooses: the event names it sends (`events`), renames that apply to every
conversion of a kind (`topic_events`), and the properties it adds (`mapping_id`,
`content_type`); through the adapters, and through the app onto a real outbox."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

import adapters
from adapters.convert import Line, Priced, line_fields, store_choices
from adapters.funnel import DEFAULT_EVENTS
from adapters.values import ConversionOptions
from kwai_bridge import db
from kwai_bridge.kwai.wire import post_body
from kwai_bridge.outbox import Outbox
from kwai_bridge.privacy import Privacy, seeds
from server import create_app
from tests.adapter_helpers import delivery, sha
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
RENAMED = "EVENT_SUBSCRIBE"  # say, a store that sells subscription boxes
ORDERS = {"shopify": ("shopify/shopify_orders_create.json", ("orders/create", "orders/paid", "orders/updated")),
          "shopline": ("shopline/shopline_orders_create.DERIVED_FROM_SDK.json",
                       ("orders/create", "orders/paid", "orders/updated")),
          "woocommerce": ("woocommerce/woocommerce_order_created.json", ("order.created", "order.updated"))}
PAID_TOPIC = {"shopify": "orders/paid", "shopline": "orders/paid", "woocommerce": "order.updated"}


def paid_order(platform: str) -> dict:
    order = json.loads(fixture_bytes(ORDERS[platform][0], shop=SHOPS[platform]))
    if platform == "woocommerce":
        return {**order, "status": "processing", "date_paid_gmt": "2026-11-26T11:00:00"}
    return {**order, "financial_status": "paid", "test": False, "email": "jon@example.com"}


# -- the rename rule, in the adapters ------------------------------------------------------
@pytest.mark.parametrize("platform", sorted(ORDERS))
def test_renaming_the_paid_order_event_renames_it_on_every_topic_that_announces_it(platform):
    deliver = delivery(adapters.REGISTRY[platform], shop=SHOPS[platform], secret="s")
    options = ConversionOptions(topic_events={PAID_TOPIC[platform]: RENAMED})
    seen = {}
    for topic in ORDERS[platform][1]:
        _, conversions = deliver(topic, paid_order(platform), options)
        seen[topic] = sorted(c.event.idempotency_key.rsplit(":", 1)[1] for c in conversions)
    created = ORDERS[platform][1][0]
    # the creation of an order created paid yields the paid order's event under its new name:
    # no hard-coded EVENT_PURCHASE beside it for the same order
    assert seen[created] == sorted(["EVENT_PLACE_ORDER", RENAMED])
    assert all(seen[topic] == [RENAMED] for topic in ORDERS[platform][1][1:])


def test_a_rename_of_orders_updated_alone_names_the_paid_order_everywhere():
    deliver = delivery(adapters.shopify, shop=SHOPS["shopify"], secret="s")
    options = ConversionOptions(topic_events={"orders/updated": RENAMED})
    names = {topic: [c.event.event_name for c in deliver(topic, paid_order("shopify"), options)[1]]
             for topic in ("orders/create", "orders/paid", "orders/updated")}
    assert names == {"orders/create": ["EVENT_PLACE_ORDER", RENAMED], "orders/paid": [RENAMED],
                     "orders/updated": [RENAMED]}


def test_ignoring_one_topic_of_a_kind_leaves_the_others_their_event():
    deliver = delivery(adapters.shopify, shop=SHOPS["shopify"], secret="s")
    options = ConversionOptions(topic_events={"orders/paid": ""})
    assert deliver("orders/paid", paid_order("shopify"), options)[1] == []
    (purchase,) = deliver("orders/updated", paid_order("shopify"), options)[1]
    assert purchase.event.event_name == "EVENT_PURCHASE"


# -- through the app -----------------------------------------------------------------------
@pytest.fixture
def bridge(tmp_path, database_url):
    """`build(**store_fields)`: an app with one Shopify store `acme`, and its outbox."""
    def build(platform: str = "shopify", **fields):
        stores = write_stores(tmp_path / "stores.toml", [store_entry(platform, "acme", **fields)])
        engine = db.make_engine(database_url)
        db.migrate(engine)
        app = create_app({"DATABASE_URL": database_url, "STORES": str(stores)}, clock=lambda: T0)
        return app, Outbox(engine), engine
    return build


def post(app, platform: str, topic: str, payload: dict):
    body = json.dumps(payload).encode()
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body,
                          delivery_id=uuid.uuid4().hex)
    answer = app.test_client().post(f"/webhooks/{platform}/acme", data=body, headers=headers)
    convert(app)  # the worker's converter, moments later
    return answer


@pytest.mark.parametrize("platform", sorted(ORDERS))
def test_a_renamed_paid_order_is_one_event_in_the_outbox(bridge, platform):
    app, outbox, _ = bridge(platform, topic_events={PAID_TOPIC[platform]: RENAMED},
                            events=[*DEFAULT_EVENTS, RENAMED])
    for topic in ORDERS[platform][1]:
        assert post(app, platform, topic, paid_order(platform)).status_code == 200
    assert sorted(row.event_name for row in outbox.list_events()) == sorted(["EVENT_PLACE_ORDER", RENAMED])


def test_only_the_events_a_store_lists_are_stored(bridge):
    app, outbox, _ = bridge(events=["EVENT_PURCHASE"])
    assert post(app, "shopify", "orders/create", paid_order("shopify")).get_json() == {"status": "received"}
    checkout = json.loads(fixture_bytes("shopify/shopify_checkouts_create.json", shop=SHOPS["shopify"]))
    assert post(app, "shopify", "checkouts/create", checkout).get_json() == {"status": "received"}
    assert [row.event_name for row in outbox.list_events()] == ["EVENT_PURCHASE"]
    d = db.deliveries.c
    with outbox.engine.connect() as conn:
        assert conn.execute(select(d.topic, d.outcome).order_by(d.id)).all() == [
            ("orders/create", "queued"), ("checkouts/create", "ignored")]


def test_the_default_events_send_what_the_webhooks_sent_before():
    assert {"EVENT_INITIATED_CHECKOUT", "EVENT_PLACE_ORDER", "EVENT_PURCHASE", "EVENT_ADD_TO_CART",
            "EVENT_COMPLETE_REGISTRATION"} < set(DEFAULT_EVENTS)
    assert {"EVENT_CONTENT_VIEW", "EVENT_SEARCH", "EVENT_ADD_PAYMENT_INFO"} < set(DEFAULT_EVENTS)
    assert len(DEFAULT_EVENTS) == 8


# -- mapping_id ----------------------------------------------------------------------------
@pytest.mark.parametrize("choice, expected", [
    ("", None), ("customer_id", "115310627314723954"), ("email_sha256", sha("jon@example.com")),
    ("phone_sha256", None),  # the sample has no phone: nothing is sent rather than something else
])
def test_mapping_id_is_the_identifier_the_store_chose(choice, expected):
    deliver = delivery(adapters.shopify, shop=SHOPS["shopify"], secret="s")
    options = ConversionOptions(mapping_id=choice)
    (conversion,) = store_choices(deliver("orders/paid", paid_order("shopify"), options)[1], options)
    assert conversion.event.mapping_id == expected
    properties = json.loads(post_body(conversion.event.with_click_id("ck"), pixel_id="p", access_token="t",
                                      track_flag=False)["properties"])
    assert properties.get("mapping_id") == expected


def test_a_customer_redaction_removes_the_mapping_id_from_the_kept_events(bridge):
    app, outbox, engine = bridge(mapping_id="email_sha256")
    post(app, "shopify", "orders/paid", paid_order("shopify"))
    other = {**paid_order("shopify"), "id": 5, "token": "t5", "email": "ann@example.com", "customer": {"id": 6}}
    post(app, "shopify", "orders/paid", other)
    mapped = {row.event.idempotency_key: row.event.mapping_id for row in outbox.list_events()}
    assert sorted(mapped.values()) == sorted([sha("jon@example.com"), sha("ann@example.com")])
    Privacy(engine).redact_customer("acme", seeds(email_sha256=sha("jon@example.com")))
    after = {row.event.idempotency_key: row.event.mapping_id for row in outbox.list_events()}
    assert after == {"order:820982911946154508:EVENT_PURCHASE": None, "order:5:EVENT_PURCHASE": sha("ann@example.com")}
    Privacy(engine).redact_shop("acme")
    assert {row.event.mapping_id for row in outbox.list_events()} == {None}


# -- content_type and content_category -----------------------------------------------------
def line(product: str, variant: str, category: str | None = None) -> Line:
    return Line(product_id=product, variant_id=variant, sku=None, title=f"t{product}", quantity=1,
                price=Decimal("2.50"), category=category)


def test_a_catalog_by_product_group_sends_products_as_groups():
    grouped = ConversionOptions(content_type="product_group", content_id="variant")
    fields = line_fields([line("p1", "v1"), line("p1", "v2")], grouped, priced=Priced(rate=Decimal(1)),
                         order_name=None)
    assert fields["content_type"] == "product_group"
    assert [c.id for c in fields["contents"]] == ["p1", "p1"] and fields["content_id"] == "p1"


@pytest.mark.parametrize("categories, expected", [
    (("Shirts", "Shirts"), "Shirts"),
    (("Shirts", "Shoes"), None),  # an event names one category, or none
    (("Shirts", None), None),
    ((None, None), None),
])
def test_content_category_is_the_lines_one_category(categories, expected):
    lines = [line(f"p{n}", f"v{n}", category) for n, category in enumerate(categories)]
    fields = line_fields(lines, ConversionOptions(), priced=Priced(rate=Decimal(1)), order_name=None)
    assert fields["content_category"] == expected


def test_a_cart_line_with_a_product_type_gives_the_cart_event_its_category():
    cart = json.loads(fixture_bytes("shopify/shopify_carts_create.json", shop=SHOPS["shopify"]))
    cart["line_items"] = [{**item, "product_type": "Shirts"} for item in cart["line_items"]]
    deliver = delivery(adapters.shopify, shop=SHOPS["shopify"], secret="s")
    (added,) = deliver("carts/create", cart)[1]
    assert added.event.content_category == "Shirts"
