"""Shopify webhooks: verify, parse and convert (pure; no I/O, no clock)."""
from __future__ import annotations

from typing import Sequence

from adapters import convert, payload, shopify_like
from adapters.signing import check_secrets, matches_any, require_header
from adapters.values import Conversion, ConversionOptions, Notification, SignatureError, WebhookRequest

NAME = "shopify"
SHOP_HEADER = "x-shopify-shop-domain"
TOPIC_HEADER = "x-shopify-topic"
SIGNATURE_HEADER = "x-shopify-hmac-sha256"
DELIVERY_HEADER = "x-shopify-webhook-id"

TOPICS: dict[str, str] = {
    "checkouts/create": "EVENT_INITIATED_CHECKOUT",
    "orders/create": "EVENT_PLACE_ORDER",
    "orders/paid": "EVENT_PURCHASE",
    "orders/updated": "EVENT_PURCHASE",  # only once financial_status is paid
    "carts/create": "EVENT_ADD_TO_CART",
    "carts/update": "EVENT_ADD_TO_CART",
    "customers/create": "EVENT_COMPLETE_REGISTRATION",
}

PRIVACY_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})

privacy_request = convert.privacy_request


# https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
def verify(request: WebhookRequest, *, secrets: Sequence[str]) -> None:
    """Raise SignatureError unless X-Shopify-Hmac-Sha256 is the base64 HMAC of the raw body."""
    check_secrets(secrets)
    received = require_header(request, SIGNATURE_HEADER)
    if not matches_any(received, request.body, secrets, encodings=("base64",)):
        raise SignatureError("body does not match X-Shopify-Hmac-Sha256")


# https://shopify.dev/docs/apps/build/webhooks/delivery-structure
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
    """X-Shopify-Webhook-Id (stable across retries), else a hash of topic and body."""
    return payload.header_value(request, DELIVERY_HEADER) or payload.body_key(notification.topic, request.body)


def is_ping(request: WebhookRequest) -> bool:
    """Never: every delivery from this platform is signed."""
    return False
