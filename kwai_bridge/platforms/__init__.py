"""The platforms' Admin APIs, outbound: one small client per platform (webhook
subscriptions and orders), with the same public names, and `client_for`, which builds
the one a store needs from its credentials.

The answers are read by pure functions in each module (tested on recorded shapes); the
requests go out through `base.Transport`, the one place with I/O.
"""
from __future__ import annotations

from kwai_bridge.config import StoreConfig
from kwai_bridge.platforms import shopify, shopline, woocommerce
from kwai_bridge.platforms.base import (
    Client, CredentialsRefused, OrdersPage, PlatformError, Refused, Subscription, Transport, Unavailable, fingerprint,
)

#: Platform -> its client module.
REGISTRY = {"shopify": shopify, "shopline": shopline, "woocommerce": woocommerce}


def api_base(store: StoreConfig) -> str:
    """The store's `admin_api_url`, or its platform's address for the shop."""
    return store.admin_api_url.rstrip("/") or REGISTRY[store.platform].default_base(store.shop)


def credentials_of(store: StoreConfig) -> str:
    """A digest of what the store's client is built from: a change means a new try."""
    return fingerprint(api_base(store), store.admin_api_token, store.consumer_key, store.consumer_secret)


def client_for(store: StoreConfig, *, transport: Transport | None = None, page_size: int | None = None) -> Client:
    """The Admin API client of `store`; PlatformError when it holds no credentials."""
    if not store.has_admin_api():
        wanted = "consumer_key and consumer_secret" if store.platform == "woocommerce" else "admin_api_token"
        raise PlatformError(f"store {store.id} has no Admin API credentials ({wanted})")
    transport = transport or Transport()
    base = api_base(store)
    extra = {"page_size": page_size} if page_size else {}
    if store.platform == "shopify":
        return shopify.ShopifyClient(base, store.admin_api_token, transport, **extra)
    if store.platform == "shopline":
        return shopline.ShoplineClient(base, store.admin_api_token, transport, **extra)
    return woocommerce.WooCommerceClient(base, store.consumer_key, store.consumer_secret, transport, **extra)


__all__ = [
    "REGISTRY", "Client", "CredentialsRefused", "OrdersPage", "PlatformError", "Refused", "Subscription", "Transport",
    "Unavailable", "api_base", "client_for", "credentials_of",
]
