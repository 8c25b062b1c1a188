"""Inbound platform adapters: one pure module per platform with the same public names
(`Adapter` lists them), and `REGISTRY`, the one list of the platforms there are.

The shared pieces: `values` (requests, notifications, conversions, errors), `signing`
(HMAC checks, shop names, hashing), `payload` (reading a delivery), `convert` (the steps
of a conversion, and the store's choices applied to them), `shopify_like` (what Shopify
and Shopline share), `clickid`, `funnel` (Kwai's 32 events and where each comes from).
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

from adapters import shopify, shopline, woocommerce
from adapters.values import Conversion, ConversionOptions, Notification, PrivacyRequest, WebhookRequest


@runtime_checkable
class Adapter(Protocol):
    """The public names of a platform's module (the module itself is the adapter)."""

    NAME: str
    #: The header naming the shop (a domain; WooCommerce: the site URL).
    SHOP_HEADER: str
    #: Topic -> the Kwai event it yields by default.
    TOPICS: Mapping[str, str]
    #: Topics whose events the body alone decides: a body already stored under another
    #: topic, coming again under one of these, still adds the events it yields.
    BODY_DECIDES_TOPICS: frozenset[str]
    #: Headers kept with a delivery so that it can be reprocessed (never the signature).
    KEPT_HEADERS: tuple[str, ...]
    #: One app secret signs every store of the app, so the signature does not tell stores
    #: apart: on a store's own route the shop header must name that store.
    APP_WIDE_SECRET: bool
    #: The platform's pixel posts clicks from a sandboxed iframe, as `Origin: null`.
    PIXEL_SANDBOX: bool

    def verify(self, request: WebhookRequest, *, secrets: Sequence[str]) -> None: ...

    def parse(self, request: WebhookRequest) -> Notification: ...

    def peek(self, request: WebhookRequest) -> Notification: ...

    def to_conversions(self, notification: Notification, *, options: ConversionOptions) -> list[Conversion]: ...

    def delivery_key(self, request: WebhookRequest, notification: Notification) -> str: ...

    def is_ping(self, request: WebhookRequest) -> bool: ...

    def privacy_request(self, notification: Notification) -> PrivacyRequest | None: ...

    def normalise_shop_setting(self, value: str) -> str:
        """The stores file's `shop` as the store is matched by; ValueError says what is wanted."""
        ...


REGISTRY: dict[str, Adapter] = {
    "shopify": shopify,
    "shopline": shopline,
    "woocommerce": woocommerce,
}


def get(platform: str) -> Adapter:
    """The adapter module for `platform`; KeyError names the known ones."""
    try:
        return REGISTRY[platform]
    except KeyError:
        raise KeyError(f"unknown platform {platform!r} (known: {', '.join(sorted(REGISTRY))})") from None


__all__ = ["Adapter", "REGISTRY", "get", "shopify", "shopline", "woocommerce"]
