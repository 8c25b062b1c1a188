"""Inbound platform adapters: one pure module per platform with the same public names.

Each module has NAME, SHOP_HEADER, TOPICS, verify, parse, to_conversions, delivery_key,
is_ping and privacy_request.
"""
from __future__ import annotations

from types import ModuleType

from adapters import shopify, shopline, woocommerce

REGISTRY: dict[str, ModuleType] = {
    "shopify": shopify,
    "shopline": shopline,
    "woocommerce": woocommerce,
}


def get(platform: str) -> ModuleType:
    """The adapter module for `platform`; KeyError names the known ones."""
    try:
        return REGISTRY[platform]
    except KeyError:
        raise KeyError(f"unknown platform {platform!r} (known: {', '.join(sorted(REGISTRY))})") from None


__all__ = ["REGISTRY", "get", "shopify", "shopline", "woocommerce"]
