"""A store as the database keeps it: a JSON document of its fields, with each secret
sealed (`kwai_bridge.sealing`) beside its hint, and the `${NAME}` references it was
imported from, so that `stores export` can write them back.

    {"fields": {"id": "acme", "platform": "shopify", ...},
     "secrets": {"access_token": {"sealed": "gAAAA...", "hint": "…a1b2"},
                 "webhook_secrets": [{"sealed": "...", "hint": "…9f0e"}]},
     "refs": {"access_token": "ACME_TOKEN"}}
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from decimal import Decimal
from typing import Any, Mapping

import orjson

from kwai_bridge.config import SECRET_FIELDS, StoreConfig
from kwai_bridge.sealing import Sealer, hint

_NAMES = tuple(f.name for f in fields(StoreConfig))
_UNSET = object()


def plain(value: Any) -> Any:
    """A field's value as JSON can hold it: tuples as lists, mappings as objects,
    decimals as strings (never floats)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def _defaults() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for f in fields(StoreConfig):
        if f.default is not MISSING:
            found[f.name] = plain(f.default)
        elif f.default_factory is not MISSING:
            found[f.name] = plain(f.default_factory())
    return found


def store_fields(config: StoreConfig, *, secrets: str = "clear") -> dict[str, Any]:
    """The store's fields as the stores file and the API write them; `secrets` is
    "clear" (the values), "hint" (`…a1b2`) or "omit"."""
    out: dict[str, Any] = {}
    for name in _NAMES:
        value = plain(getattr(config, name))
        if name in SECRET_FIELDS:
            if secrets == "omit":
                continue
            if secrets == "hint":
                # an optional secret left empty stays "": shown as not set, exported as not set
                value = [hint(v) for v in value] if isinstance(value, list) else (hint(value) if value else "")
        out[name] = value
    return out


def to_document(config: StoreConfig, *, sealer: Sealer, refs: Mapping[str, Any] | None = None) -> str:
    """The document stored for `config`: secrets sealed, never in clear."""
    def seal(secret: str) -> dict[str, str]:
        return {"sealed": sealer.seal(secret), "hint": hint(secret)}

    sealed: dict[str, Any] = {}
    for name in SECRET_FIELDS:
        value = getattr(config, name)
        sealed[name] = [seal(v) for v in value] if isinstance(value, tuple) else seal(value)
    # A field left at its default is not written: when a release changes a default (which
    # events are sent, say), stores that never chose otherwise follow it.
    chosen = {k: v for k, v in store_fields(config, secrets="omit").items() if v != _DEFAULTS.get(k, _UNSET)}
    return orjson.dumps({"fields": chosen, "secrets": sealed, "refs": dict(refs or {})}).decode()


def from_document(text: str, *, sealer: Sealer | None) -> StoreConfig:
    """The store a document holds; without `sealer`, each secret is only its hint (for
    commands that list or count and must not need the keys)."""
    document = orjson.loads(text)
    values = {k: v for k, v in document["fields"].items() if k in _NAMES}
    for name, stored in document["secrets"].items():
        if name not in _NAMES:
            continue

        def reveal(item: Mapping[str, str]) -> str:
            return sealer.open(item["sealed"]) if sealer is not None else item["hint"]

        values[name] = [reveal(i) for i in stored] if isinstance(stored, list) else reveal(stored)
    return StoreConfig(**values)


def references_of(text: str) -> dict[str, Any]:
    """The `${NAME}` references a stored store was imported with."""
    return dict(orjson.loads(text).get("refs") or {})


def reseal(text: str, *, sealer: Sealer) -> str:
    """The document with every secret sealed again with the first key."""
    document = orjson.loads(text)
    for name, stored in document["secrets"].items():
        items = stored if isinstance(stored, list) else [stored]
        for item in items:
            item["sealed"] = sealer.reseal(item["sealed"])
    return orjson.dumps(document).decode()


_DEFAULTS = _defaults()

__all__ = ["from_document", "plain", "references_of", "reseal", "store_fields", "to_document"]
