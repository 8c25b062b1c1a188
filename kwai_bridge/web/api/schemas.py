"""The marshmallow schema of every body and query the API takes. Each refuses unknown
fields; `load` turns marshmallow's errors into a 400 `{"errors": {field: [messages]}}`.

A store's fields are only named here: what each may hold is checked by
`kwai_bridge.config.check_store`, the same check a stores file gets.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import timezone
from typing import Any, Mapping

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from kwai_bridge.config import StoreConfig
from kwai_bridge.db import DeliveryOutcome, EventStatus
from kwai_bridge.kwai.events import EVENT_NAMES
from kwai_bridge.admin import Invalid, store_errors

STORE_FIELDS = tuple(f.name for f in dataclass_fields(StoreConfig))
MAX_LIMIT = 500


class Strict(Schema):
    class Meta:
        unknown = RAISE


#: A store's body, as in the stores file: every field by name, checked by check_store.
StoreBody = Strict.from_dict({name: fields.Raw(allow_none=False) for name in STORE_FIELDS}, name="StoreBody")


class ReplayBody(Strict):
    status = fields.String(validate=validate.OneOf(["dead", "held"]))
    result = fields.Integer(strict=True)


class TestEventBody(Strict):
    clickid = fields.String(required=True, validate=validate.Length(1, 512))
    event_name = fields.String(load_default="EVENT_PURCHASE", validate=validate.OneOf(sorted(EVENT_NAMES)))


def _limit() -> fields.Integer:
    return fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))


class EventsQuery(Strict):
    store = fields.String()
    status = fields.String(validate=validate.OneOf([s.value for s in EventStatus]))
    event_name = fields.String()
    order = fields.String()
    since = fields.AwareDateTime(default_timezone=timezone.utc)
    cursor = fields.String()
    limit = _limit()


class DeliveriesQuery(Strict):
    store = fields.String()
    outcome = fields.String(validate=validate.OneOf([o.value for o in DeliveryOutcome]))
    cursor = fields.String()
    limit = _limit()


class AuditQuery(Strict):
    target = fields.String()
    cursor = fields.Integer(validate=validate.Range(min=1))
    limit = _limit()


class AccuracyQuery(Strict):
    since = fields.Date()


class DeleteQuery(Strict):
    force = fields.Boolean(load_default=False)


def load(schema: type[Schema], data: Any) -> dict[str, Any]:
    """`data` loaded by `schema`; Invalid (400) naming every wrong field."""
    if not isinstance(data, Mapping):
        raise Invalid({"_schema": ["the body must be a JSON object"]})
    try:
        return schema().load(dict(data))
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise Invalid({k: v if isinstance(v, list) else [str(v)] for k, v in messages.items()}) from None


__all__ = ["AuditQuery", "DeleteQuery", "DeliveriesQuery", "EventsQuery", "MAX_LIMIT", "ReplayBody", "StoreBody",
           "TestEventBody", "load", "store_errors"]
