"""Shopline (developer.shopline.com) webhooks: verify, parse and convert (pure; no I/O, no
clock).

The parsing and conversion are Shopify's too and live in `adapters.shopify_like`; this
module holds what is Shopline's own.
"""
from __future__ import annotations

from adapters import shopify_like
# public names of this module that are the same on both Shopify-like platforms
from adapters.convert import privacy_request
from adapters.shopify_like import is_ping, to_conversions
from adapters.signing import HmacSignature

NAME = "shopline"
SHOP_HEADER = "x-shopline-shop-domain"
TOPICS = shopify_like.TOPICS
BODY_DECIDES_TOPICS = shopify_like.BODY_DECIDES_TOPICS
KEPT_HEADERS = ("x-shopline-topic", "x-shopline-shop-domain", "x-shopline-webhook-id")
APP_WIDE_SECRET = True
PIXEL_SANDBOX = False

# https://developer.shopline.com/docs/apps/api-instructions-for-use/generate-and-verify-signatures
# The official SDK sends lower-case hex while the docs' example looks base64: both are
# accepted, hex in any case.
SIGNATURE = HmacSignature("X-Shopline-Hmac-Sha256", encodings=("hex", "base64"))
# https://developer.shopline.com/docs/apps/api-instructions-for-use/webhooks/overview
PLATFORM = shopify_like.ShopifyLike(
    name=NAME, shop_header=SHOP_HEADER, topic_header="x-shopline-topic", delivery_header="x-shopline-webhook-id",
    privacy_topics=frozenset({"customers/redact", "merchants/redact"}),
    domain_suffix=".myshopline.com",
)

verify = SIGNATURE.verify
parse = PLATFORM.parse
peek = PLATFORM.peek
delivery_key = PLATFORM.delivery_key
normalise_shop_setting = PLATFORM.normalise_shop_setting

