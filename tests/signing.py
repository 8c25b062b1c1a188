"""Sign webhook bodies the way each platform does, at test time.

The HMAC is computed here with the standard library, not with the adapters' helpers, so
a fault in the adapters cannot hide itself in the tests.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

SIGNATURE_HEADERS = {
    "shopify": "X-Shopify-Hmac-Sha256",
    "shopline": "X-Shopline-Hmac-Sha256",
    "woocommerce": "X-WC-Webhook-Signature",
}
#: What each platform sends: Shopline's official SDK signs in lower-case hex.
DEFAULT_ENCODINGS = {"shopify": "base64", "shopline": "hex", "woocommerce": "base64"}


def signature(secret: str, body: bytes, encoding: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    if encoding == "hex":
        return digest.hex()
    if encoding == "HEX":
        return digest.hex().upper()
    raise ValueError(f"unknown encoding {encoding!r}")


def sign(platform: str, secret: str, body: bytes, *, encoding: str | None = None) -> dict[str, str]:
    """The signature header for `body`, as `{header name: value}`."""
    return {SIGNATURE_HEADERS[platform]: signature(secret, body, encoding or DEFAULT_ENCODINGS[platform])}


def headers_for(platform: str, topic: str, *, shop: str, secret: str, body: bytes,
                delivery_id: str | None = None) -> dict[str, str]:
    """The full header set a platform sends with a delivery of `topic` (signed).

    `shop` is the shop domain (Shopify, Shopline) or the site URL (WooCommerce's
    X-WC-Webhook-Source, e.g. `https://shop.example/`). Without `delivery_id` a
    stable one is derived from topic and body, so a resend looks like a resend.
    """
    derived = uuid.uuid5(uuid.NAMESPACE_URL, f"{platform}/{topic}/{body.hex()}")
    if platform == "shopify":
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-API-Version": "2026-04",
            "X-Shopify-Webhook-Id": delivery_id or str(derived),
            "X-Shopify-Event-Id": str(uuid.uuid5(derived, "event")),
        }
    elif platform == "shopline":
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Shopline-Topic": topic,
            "X-Shopline-Shop-Domain": shop,
            "X-Shopline-Shop-Id": "1610418123456",
            "X-Shopline-Merchant-Id": "2000001234",
            "X-Shopline-Api-Version": "v20260301",
            "X-Shopline-Webhook-Id": delivery_id or derived.hex[:24],
        }
    elif platform == "woocommerce":
        resource, _, event = topic.partition(".")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "WooCommerce/9.8.0 Hookshot (WordPress/6.8)",
            "X-WC-Webhook-Source": shop,
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-ID": "1",
            "X-WC-Webhook-Delivery-ID": delivery_id or derived.hex,
        }
    else:
        raise ValueError(f"unknown platform {platform!r}")
    headers.update(sign(platform, secret, body))
    return headers


def ping_headers() -> dict[str, str]:
    """What WooCommerce's creation ping carries: no X-WC-* header, no signature."""
    return {
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
        "User-Agent": "WooCommerce/9.8.0 Hookshot (WordPress/6.8)",
    }
