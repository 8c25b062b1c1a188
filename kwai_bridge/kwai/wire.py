"""Kwai's wire format: the only place Kwai's field spellings appear.

One marshmallow schema turns a `KwaiEvent` plus the store's credentials into the POST
body; the GET query is the same dump with every value as text, percent-encoded here. Anything Kwai would
refuse is refused here first, with `EventError`, so it never leaves the process.

Field spellings follow the table of Kwai's "Event API Manual" (spec/kwai-event-api.md),
not its curl example.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from marshmallow import Schema, fields, post_dump

from kwai_bridge.kwai.events import EventError, KwaiEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True)
class _Outgoing:
    """What one request carries: the event and the store's credentials."""

    event: KwaiEvent
    pixel_id: str
    access_token: str
    track_flag: bool


class _RequestSchema(Schema):
    """Kwai's request fields; `data_key` holds Kwai's spelling."""

    access_token = fields.String(data_key="access_token")
    click_id = fields.String(attribute="event.click_id", data_key="clickid")
    event_name = fields.String(attribute="event.event_name", data_key="event_name")
    pixel_id = fields.String(data_key="pixelId")
    test_flag = fields.Constant(False, data_key="testFlag")
    track_flag = fields.Boolean(data_key="trackFlag")
    is_attributed = fields.Constant(1, data_key="is_attributed")
    mmp_code = fields.Constant("PL", data_key="mmpcode")
    pixel_sdk_version = fields.Constant("9.9.9", data_key="pixelSdkVersion")
    properties = fields.Method("_properties", data_key="properties")
    third_party = fields.String(attribute="event.third_party", data_key="third_party")
    currency = fields.String(attribute="event.currency", data_key="currency")
    value = fields.Method("_value", data_key="value")

    def _properties(self, out: _Outgoing) -> str:
        return _json_text(_properties(out.event))

    def _value(self, out: _Outgoing) -> str | None:
        return None if out.event.value is None else _decimal_text(out.event.value, "value")

    @post_dump
    def _drop_absent(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        # value and currency travel together or not at all (validate() made sure).
        return {key: item for key, item in data.items() if item is not None}


_SCHEMA = _RequestSchema()


def post_body(
    event: KwaiEvent, *, pixel_id: str, access_token: str, track_flag: bool
) -> dict[str, Any]:
    """Return the JSON-ready POST body for `event`, or raise EventError."""
    return _SCHEMA.dump(_outgoing(event, pixel_id, access_token, track_flag))


def post_json(
    event: KwaiEvent, *, pixel_id: str, access_token: str, track_flag: bool
) -> bytes:
    """`post_body` as the request's JSON bytes, or EventError (a string that is not valid
    Unicode, say a lone surrogate, cannot be sent)."""
    body = post_body(event, pixel_id=pixel_id, access_token=access_token, track_flag=track_flag)
    try:
        return orjson.dumps(body)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise EventError(f"{event.idempotency_key}: the request cannot be written as JSON: {exc}") from None


def get_query(
    event: KwaiEvent, *, pixel_id: str, access_token: str, track_flag: bool
) -> dict[str, str]:
    """Return the same fields as `post_body`, each as URL query text."""
    body = post_body(event, pixel_id=pixel_id, access_token=access_token, track_flag=track_flag)
    return {key: _query_text(item) for key, item in body.items()}


def get_query_string(
    event: KwaiEvent, *, pixel_id: str, access_token: str, track_flag: bool
) -> str:
    """The GET query (without `?`): `get_query` with every name and value percent-encoded
    as UTF-8, a space as `%20` (form encoding's `+` would reach a strict server as a
    literal `+`), and `&`, `=`, `+`, `/` and quotes escaped, so that any value comes
    back unchanged."""
    query = get_query(event, pixel_id=pixel_id, access_token=access_token, track_flag=track_flag)
    return urlencode(query, quote_via=quote, safe="")


def _outgoing(event: KwaiEvent, pixel_id: str, access_token: str, track_flag: bool) -> _Outgoing:
    event.validate()
    if not isinstance(pixel_id, str) or not pixel_id.strip():
        raise EventError(f"{event.idempotency_key}: the store has no Kwai pixel id")
    if not isinstance(access_token, str) or not access_token.strip():
        raise EventError(f"{event.idempotency_key}: the store has no Kwai access token")
    if not isinstance(track_flag, bool):
        raise EventError(f"track_flag must be True or False, not {type(track_flag).__name__}")
    return _Outgoing(event, pixel_id, access_token, track_flag)


def _properties(event: KwaiEvent) -> dict[str, Any]:
    contents = [_content(item.id, item.quantity, item.price) for item in event.contents]
    props: dict[str, Any] = {
        "event_timestamp": (event.event_time - _EPOCH) // _MILLISECOND,
        "content_type": event.content_type,
        "contents": contents,
        "content_id": event.content_id,
        "content_name": event.content_name,
        "content_category": event.content_category,
        "quantity": event.quantity,
        "query": event.query,
        "mapping_id": event.mapping_id,
    }
    return {key: item for key, item in props.items() if item is not None and item != "" and item != []}


def _content(content_id: str, quantity: int, price: Decimal | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": content_id, "quantity": quantity}
    if price is not None:
        item["price"] = price
    return item


def _decimal_text(amount: Decimal, what: str) -> str:
    """Plain decimal text ("10.28", never "1E+1"); refuse NaN and infinities."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise EventError(f"{what} must be a finite Decimal, not {amount!r}")
    return format(amount, "f")


def _json_text(item: Any) -> str:
    """Compact JSON in which a Decimal is written as a JSON number with its exact digits
    (going through float would turn 4.99 into 4.990000000000000213... on some paths)."""
    try:
        return orjson.dumps(item, default=_exact_number).decode()
    except TypeError as exc:  # orjson.JSONEncodeError
        if isinstance(exc.__cause__, EventError):
            raise exc.__cause__ from None
        # An integer beyond 64 bits, say: nothing Kwai would take.
        raise EventError(f"properties cannot be written as JSON: {exc}") from None


def _exact_number(item: Any) -> orjson.Fragment:
    if isinstance(item, Decimal):
        return orjson.Fragment(_decimal_text(item, "price"))
    raise TypeError(f"{type(item).__name__} is not JSON")


def _query_text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


__all__ = ["get_query", "get_query_string", "post_body", "post_json"]
