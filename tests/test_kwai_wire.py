"""Kwai's wire format: the exact POST body, the GET query, and every refusal."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote

import pytest

from kwai_bridge.kwai.events import Content, EventError, KwaiEvent
from kwai_bridge.kwai.wire import get_query, get_query_string, post_body, post_json

WHEN = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
WHEN_MS = 1714564800123
CREDS = dict(pixel_id="pixel-42", access_token="tok-secret", track_flag=False)

FULL = KwaiEvent(
    event_name="EVENT_PURCHASE",
    event_time=WHEN,
    third_party="shopify",
    idempotency_key="order:1001:EVENT_PURCHASE",
    click_id="5u_vMxm+ab/cd-ef==",
    value=Decimal("10.28"),
    currency="BRL",
    contents=(Content("sku-1", 2, Decimal("4.99")), Content("sku-2", 1, Decimal("0.30")),
              Content("sku-3", 1)),
    content_type="product",
    content_id="sku-1",
    content_name="Camiseta azul ção",
    content_category="Roupas",
    quantity=4,
)
BARE = KwaiEvent(
    event_name="EVENT_ADD_TO_CART",
    event_time=WHEN,
    third_party="woocommerce",
    idempotency_key="cart:9:EVENT_ADD_TO_CART",
    click_id="click-9",
)


def test_full_post_body_field_by_field():
    body = post_body(FULL, **CREDS)
    properties = body.pop("properties")
    assert body == {
        "access_token": "tok-secret",
        "clickid": "5u_vMxm+ab/cd-ef==",
        "event_name": "EVENT_PURCHASE",
        "pixelId": "pixel-42",
        "testFlag": False,
        "trackFlag": False,
        "is_attributed": 1,
        "mmpcode": "PL",
        "pixelSdkVersion": "9.9.9",
        "third_party": "shopify",
        "currency": "BRL",
        "value": "10.28",
    }
    assert type(body["testFlag"]) is bool and type(body["is_attributed"]) is int
    assert isinstance(properties, str)
    # Prices are JSON numbers written with the Decimal's own digits.
    assert '"price":4.99' in properties and '"price":0.30' in properties
    assert json.loads(properties, parse_float=Decimal) == {
        "event_timestamp": WHEN_MS,
        "content_type": "product",
        "contents": [
            {"id": "sku-1", "quantity": 2, "price": Decimal("4.99")},
            {"id": "sku-2", "quantity": 1, "price": Decimal("0.30")},
            {"id": "sku-3", "quantity": 1},
        ],
        "content_id": "sku-1",
        "content_name": "Camiseta azul ção",
        "content_category": "Roupas",
        "quantity": 4,
    }


def test_body_is_plain_json():
    text = json.dumps(post_body(FULL, **CREDS))
    assert json.loads(text)["value"] == "10.28"


def test_event_without_value_has_no_currency_or_value():
    body = post_body(BARE, pixel_id="p", access_token="t", track_flag=True)
    assert set(body) == {
        "access_token", "clickid", "event_name", "pixelId", "testFlag", "trackFlag",
        "is_attributed", "mmpcode", "pixelSdkVersion", "properties", "third_party",
    }
    assert body["trackFlag"] is True and body["testFlag"] is False
    assert body["third_party"] == "woocommerce"
    assert json.loads(body["properties"]) == {"event_timestamp": WHEN_MS}


@pytest.mark.parametrize(
    "amount, text",
    [(Decimal("10.28"), "10.28"), (Decimal("150000"), "150000"), (Decimal("1E+2"), "100"),
     (Decimal("0.10"), "0.10"), (Decimal("19.999"), "19.999")],
)
def test_value_is_plain_decimal_text(amount, text):
    assert post_body(replace(FULL, value=amount), **CREDS)["value"] == text


def test_event_timestamp_is_milliseconds_utc_of_the_action():
    local = WHEN.astimezone(timezone(timedelta(hours=-3)))
    body = post_body(replace(BARE, event_time=local), **CREDS)
    assert json.loads(body["properties"])["event_timestamp"] == WHEN_MS


def test_search_query_and_empty_keys_left_out():
    event = replace(BARE, event_name="EVENT_SEARCH", query="tênis", content_name="", contents=())
    props = json.loads(post_body(event, **CREDS)["properties"])
    assert props == {"event_timestamp": WHEN_MS, "query": "tênis"}


def test_get_query_is_the_same_fields_as_text():
    query = get_query(FULL, **CREDS)
    body = post_body(FULL, **CREDS)
    assert set(query) == set(body)
    assert all(isinstance(item, str) for item in query.values())
    assert query["testFlag"] == "false"
    assert query["trackFlag"] == "false"
    assert query["is_attributed"] == "1"
    assert query["value"] == "10.28"
    assert query["clickid"] == "5u_vMxm+ab/cd-ef=="
    assert query["properties"] == body["properties"]
    assert get_query(BARE, pixel_id="p", access_token="t", track_flag=True)["trackFlag"] == "true"


def test_get_query_string_encodes_every_value_and_a_space_as_percent_20():
    event = replace(FULL, content_name='a "b" & c=d + é', click_id="x+y/z= w")
    text = get_query_string(event, **CREDS)
    assert "+" not in text and " " not in text and "%20" in text
    pairs = [pair.split("=") for pair in text.split("&")]
    assert all(len(pair) == 2 for pair in pairs)  # no raw "&" or "=" inside a value
    assert {unquote(k): unquote(v) for k, v in pairs} == get_query(event, **CREDS)
    assert "clickid=x%2By%2Fz%3D%20w" in text
    assert "%C3%A9" in text  # UTF-8


@pytest.mark.parametrize(
    "event, creds, words",
    [
        (replace(BARE, event_name="EVENT_CUSTOM"), CREDS, "unknown Kwai event name"),
        (replace(BARE, click_id=None), CREDS, "missing click id"),
        (replace(BARE, click_id=""), CREDS, "missing click id"),
        (replace(BARE, value=Decimal("5")), CREDS, "value and currency"),
        (replace(BARE, currency="USD"), CREDS, "value and currency"),
        (replace(BARE, value=Decimal("5"), currency="EUR"), CREDS, "currency 'EUR'"),
        (replace(BARE, third_party=""), CREDS, "third_party"),
        (replace(BARE, third_party="Shop ify"), CREDS, "third_party"),
        (replace(BARE, value=Decimal("NaN"), currency="BRL"), CREDS, "finite"),
        (replace(BARE, contents=(Content("x", 1, Decimal("Infinity")),)), CREDS, "finite"),
        (replace(BARE, quantity=2**64), CREDS, "cannot be written as JSON"),
        (BARE, dict(CREDS, pixel_id=""), "pixel id"),
        (BARE, dict(CREDS, pixel_id="  "), "pixel id"),
        (BARE, dict(CREDS, access_token=""), "access token"),
        (BARE, dict(CREDS, access_token=None), "access token"),
        (BARE, dict(CREDS, track_flag="false"), "track_flag"),
    ],
)
@pytest.mark.parametrize("build", [post_body, get_query, get_query_string])
def test_refusals(build, event, creds, words):
    with pytest.raises(EventError, match=words):
        build(event, **creds)


def test_refusal_never_names_the_token():
    with pytest.raises(EventError) as caught:
        post_body(replace(BARE, click_id=None), **CREDS)
    assert "tok-secret" not in str(caught.value)


def test_post_json_is_the_post_body_as_json_bytes():
    assert json.loads(post_json(BARE, **CREDS)) == post_body(BARE, **CREDS)
