"""Shopline (developer.shopline.com) webhooks: verify, parse and convert (pure; no I/O, no clock)."""
from __future__ import annotations

from typing import Sequence

from adapters import convert, payload, shopify_like
from adapters.signing import check_secrets, matches_any, require_header
from adapters.values import Conversion, ConversionOptions, Notification, SignatureError, WebhookRequest

NAME = "shopline"
SHOP_HEADER = "x-shopline-shop-domain"
TOPIC_HEADER = "x-shopline-topic"
SIGNATURE_HEADER = "x-shopline-hmac-sha256"
DELIVERY_HEADER = "x-shopline-webhook-id"

TOPICS: dict[str, str] = {
    "checkouts/create": "EVENT_INITIATED_CHECKOUT",
    "orders/create": "EVENT_PLACE_ORDER",
    "orders/paid": "EVENT_PURCHASE",
    "orders/updated": "EVENT_PURCHASE",  # only once financial_status is paid
    "carts/create": "EVENT_ADD_TO_CART",
    "carts/update": "EVENT_ADD_TO_CART",
    "customers/create": "EVENT_COMPLETE_REGISTRATION",
}

PRIVACY_TOPICS = frozenset({"customers/redact", "merchants/redact"})

privacy_request = convert.privacy_request


# https://developer.shopline.com/docs/apps/api-instructions-for-use/generate-and-verify-signatures
def verify(request: WebhookRequest, *, secrets: Sequence[str]) -> None:
    """Raise SignatureError unless X-Shopline-Hmac-Sha256 is the HMAC of the raw body.

    The official SDK sends lower-case hex while the docs' example looks base64: both
    are accepted, hex in any case.
    """
    check_secrets(secrets)
    received = require_header(request, SIGNATURE_HEADER)
    if not matches_any(received, request.body, secrets, encodings=("hex", "base64")):
        raise SignatureError("body does not match X-Shopline-Hmac-Sha256")


# https://developer.shopline.com/docs/apps/api-instructions-for-use/webhooks/overview
def parse(request: WebhookRequest) -> Notification:
    """The verified delivery as a Notification; PayloadError unless the body is a JSON object."""
    return shopify_like.parse_shopify_like(
        request, platform=NAME, topic_header=TOPIC_HEADER, shop_header=SHOP_HEADER,
        id_header=DELIVERY_HEADER, privacy_topics=PRIVACY_TOPICS,
    )


def to_conversions(notification: Notification, *, options: ConversionOptions) -> list[Conversion]:
    """The Kwai events a notification yields for a store with `options` ([] when none)."""
    return shopify_like.to_conversions(notification, options=options, topics=TOPICS)


def delivery_key(request: WebhookRequest, notification: Notification) -> str:
    """X-Shopline-Webhook-Id (unchanged when resent), else a hash of topic and body."""
    return payload.header_value(request, DELIVERY_HEADER) or payload.body_key(notification.topic, request.body)


def is_ping(request: WebhookRequest) -> bool:
    """Never: every delivery from this platform is signed."""
    return False
