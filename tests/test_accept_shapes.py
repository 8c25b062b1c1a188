"""What `Outbox.accept` stores for each shape of webhook, on both databases (on PostgreSQL
the common shapes are one INSERT with CTEs, kwai_bridge.outbox.single; carts and
duplicates that still owe events take the transaction of the general path)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from kwai_bridge.db import deliveries, event_identifiers, events
from tests.outbox_helpers import accept, box, conv, engine  # noqa: F401 (fixtures)


def counts(engine):  # noqa: F811
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (deliveries, events, event_identifiers))


def with_ids(conversion, **identifiers):
    return replace(conversion, identifiers=identifiers)


@pytest.mark.parametrize("conversions, stored", [
    ([], (1, 0, 0)),
    ([with_ids(conv("order:1:EVENT_PURCHASE"))], (1, 1, 0)),
    ([with_ids(conv("order:1:EVENT_PLACE_ORDER", name="EVENT_PLACE_ORDER"), order_id="1", email_sha256="e"),
      with_ids(conv("order:1:EVENT_PURCHASE"), order_id="1", email_sha256="e", cart_token="c")], (1, 2, 5)),
    ([conv("cart:t:EVENT_ADD_TO_CART:2", name="EVENT_ADD_TO_CART", high_water=("cart:t", 2))], (1, 1, 1)),
])
def test_each_shape_is_stored_whole(box, engine, conversions, stored):  # noqa: F811
    result = accept(box, "d1", conversions)
    assert (result.duplicate, result.created, result.added) == (False, len(conversions), tuple(conversions))
    assert result.delivery_id is not None
    assert counts(engine) == stored
    again = accept(box, "d1", conversions)
    assert (again.duplicate, again.created, again.delivery_id) == (True, 0, None)
    assert counts(engine) == stored


def test_an_event_the_store_has_is_not_added_nor_its_identifiers(box, engine):  # noqa: F811
    first = with_ids(conv("order:1:EVENT_PURCHASE"), order_id="1")
    accept(box, "d1", [first], body=b'{"id": 1}')
    result = accept(box, "d2", [first, with_ids(conv("order:2:EVENT_PURCHASE"), order_id="2")], body=b'{"id": 2}')
    assert (result.duplicate, result.created) == (False, 1)
    assert [c.event.idempotency_key for c in result.added] == ["order:2:EVENT_PURCHASE"]
    assert counts(engine) == (2, 2, 2)
    with engine.connect() as conn:
        linked = conn.execute(select(events.c.business_key, deliveries.c.delivery_key)
                              .join(deliveries, events.c.delivery_id == deliveries.c.id)
                              .order_by(events.c.id)).all()
    assert linked == [("order:1:EVENT_PURCHASE", "d1"), ("order:2:EVENT_PURCHASE", "d2")]


def test_a_body_seen_under_another_topic_still_adds_what_it_owes(box, engine):  # noqa: F811
    body = b'{"id": 7, "financial_status": "paid"}'
    paid = box.accept(store_id="store-a", platform="shopify", topic="orders/paid", delivery_key="w1",
                      received_at=conv("x").event.event_time, body=body, headers={},
                      conversions=[conv("order:7:EVENT_PURCHASE")], body_sha256="b" * 64)
    created = box.accept(store_id="store-a", platform="shopify", topic="orders/create", delivery_key="w2",
                         received_at=conv("x").event.event_time, body=body, headers={},
                         conversions=[conv("order:7:EVENT_PLACE_ORDER", name="EVENT_PLACE_ORDER"),
                                      conv("order:7:EVENT_PURCHASE")],
                         body_sha256="b" * 64, body_decides=True)
    assert (created.duplicate, created.created, created.delivery_id) == (True, 1, paid.delivery_id)
    assert counts(engine)[:2] == (1, 2)
