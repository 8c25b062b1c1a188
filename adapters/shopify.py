"""Shopify webhooks: verify, parse and convert (pure; no I/O, no clock).

The parsing and conversion are Shopline's too and live in `adapters.shopify_like`; this
module holds what is Shopify's own.
"""
from __future__ import annotations

from adapters import shopify_like
# public names of this module that are the same on both Shopify-like platforms
from adapters.convert import privacy_request
from adapters.shopify_like import is_ping, to_conversions
from adapters.signing import HmacSignature

NAME = "shopify"
SHOP_HEADER = "x-shopify-shop-domain"
TOPICS = shopify_like.TOPICS
BODY_DECIDES_TOPICS = shopify_like.BODY_DECIDES_TOPICS
KEPT_HEADERS = ("x-shopify-topic", "x-shopify-shop-domain", "x-shopify-webhook-id", "x-shopify-triggered-at")
APP_WIDE_SECRET = True
#: A custom pixel runs in a sandboxed iframe without `allow-same-origin`: `Origin: null`.
PIXEL_SANDBOX = True

# https://shopify.dev/docs/apps/build/webhooks/verify-deliveries
SIGNATURE = HmacSignature("X-Shopify-Hmac-Sha256", encodings=("base64",))
# https://shopify.dev/docs/apps/build/webhooks/delivery-structure
PLATFORM = shopify_like.ShopifyLike(
    name=NAME, shop_header=SHOP_HEADER, topic_header="x-shopify-topic", delivery_header="x-shopify-webhook-id",
    privacy_topics=frozenset({"customers/data_request", "customers/redact", "shop/redact"}),
    domain_suffix=".myshopify.com",
)

verify = SIGNATURE.verify
parse = PLATFORM.parse
peek = PLATFORM.peek
delivery_key = PLATFORM.delivery_key
normalise_shop_setting = PLATFORM.normalise_shop_setting

