"""A store's fields as form inputs and back: lists one per line, tables as `key = value`
lines, secrets shown as their hint and replaced only when a new value is typed. What the
values may be is checked by `kwai_bridge.config.check_store` (through `kwai_bridge.admin`),
as for the API and the stores file."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Mapping

from kwai_bridge.admin import Invalid
from kwai_bridge.catalog.documents import plain
from kwai_bridge.config import PLATFORMS, SECRET_FIELDS, StoreConfig

BOOLEANS = frozenset({"test_mode", "consent_mode"})
INTEGERS = frozenset({"click_window_days", "late_binding_hours", "clicks_per_minute", "max_clicks", "quiet_hours"})
LISTS = frozenset({"webhook_secrets", "events", "event_triggers", "click_params", "storefront_domains", "click_tokens"})
TABLES = frozenset({"topic_events", "currency_rates"})
HELP = {
    "id": "letters, digits, _ or -: it becomes part of the webhook URL",
    "shop": "the *.myshopify.com or *.myshopline.com domain, or the WooCommerce site URL",
    "webhook_secrets": "one per line",
    "events": "Kwai event names, one per line",
    "topic_events": "topic = EVENT_NAME, one per line",
    "event_triggers": "EVENT_NAME css-selector, or EVENT_NAME url:/path*, one per line",
    "currency_rates": "EUR = 5.80, one per line",
    "click_params": "one per line",
    "storefront_domains": "one per line",
    "click_tokens": "one per line (openssl rand -hex 32)",
    "quiet_hours": "warn when an expected webhook topic is silent this long",
}


@dataclass(frozen=True)
class Field:
    """One input of the store form."""

    name: str
    kind: str  # text, number, checkbox, lines, select
    value: Any
    required: bool
    secret: bool
    help: str = ""
    choices: tuple[str, ...] = ()


def _shown(name: str, value: Any) -> Any:
    value = plain(value)
    if name in LISTS:
        return "\n".join(value)
    if name in TABLES:
        return "\n".join(f"{k} = {v}" for k, v in value.items())
    return value


def form_fields(config: StoreConfig | None, *, submitted: Mapping[str, str] | None = None) -> list[Field]:
    """The inputs of the form, filled from `config` (edit) or the defaults (new), or with
    what was submitted when it is shown again with errors."""
    out = []
    for f in fields(StoreConfig):
        name = f.name
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING
                                                               else "")
        value = "" if name in SECRET_FIELDS else _shown(name, getattr(config, name) if config else default)
        if submitted is not None and name not in SECRET_FIELDS:
            value = submitted.get(name, "") if name not in BOOLEANS else name in submitted
        kind = ("checkbox" if name in BOOLEANS else "number" if name in INTEGERS else
                "lines" if name in LISTS | TABLES else "select" if name == "platform" else "text")
        out.append(Field(name, kind, value, required=f.default is MISSING and f.default_factory is MISSING,
                         secret=name in SECRET_FIELDS, help=HELP.get(name, ""),
                         choices=PLATFORMS if name == "platform" else ()))
    return out


def _table(name: str, text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise Invalid({name: [f"{line.strip()!r}: write one `key = value` per line"]})
        found[key.strip()] = value.strip()
    return found


def entry_from_form(form: Mapping[str, str], *, editing: bool) -> dict[str, Any]:
    """The store's fields from a submitted form. Editing, a secret left empty is kept (it
    is not in the result); creating, an empty optional field takes its default."""
    entry: dict[str, Any] = {}
    for f in fields(StoreConfig):
        name = f.name
        if name in BOOLEANS:
            entry[name] = name in form
            continue
        raw = form.get(name, "")
        if name in SECRET_FIELDS and not raw.strip():
            continue
        if not raw.strip() and not editing and (f.default is not MISSING or f.default_factory is not MISSING):
            continue
        if name in LISTS:
            entry[name] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif name in TABLES:
            entry[name] = _table(name, raw)
        elif name in INTEGERS:
            entry[name] = int(raw.strip()) if raw.strip().lstrip("-").isdigit() else raw
        else:
            entry[name] = raw.strip()
    if editing:
        entry.pop("id", None)
    return entry


__all__ = ["Field", "entry_from_form", "form_fields"]
