"""What the per-platform adapter tests share: a signed delivery through one adapter, and
the wire form of an event."""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Callable

from adapters.values import ConversionOptions, WebhookRequest
from kwai_bridge.kwai.wire import post_body
from tests.signing import headers_for


def delivery(adapter, *, shop: str, secret: str) -> Callable:
    """`deliver(topic, payload, options)`: sign `payload` as the platform would, verify,
    parse and convert it with `adapter`; return (notification, conversions)."""

    def deliver(topic: str, payload: dict | bytes, options: ConversionOptions = ConversionOptions()):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = WebhookRequest.build(headers_for(adapter.NAME, topic, shop=shop, secret=secret, body=body), body)
        adapter.verify(request, secrets=[secret])
        notification = adapter.parse(request)
        return notification, adapter.to_conversions(notification, options=options)

    return deliver


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wire(event) -> tuple[dict, dict]:
    """The POST body for `event` and its `properties`, parsed (prices as Decimal)."""
    body = post_body(event, pixel_id="px", access_token="tok", track_flag=False)
    return body, json.loads(body.pop("properties"), parse_float=Decimal)
