"""A store's fields as form inputs and back: lists one per line, tables as `key = value`
lines, secrets shown as their hint and replaced only when a new value is typed. What the
values may be is checked by `kwai_bridge.config.check_store` (through `kwai_bridge.admin`),
as for the API and the stores file."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from collections.abc import Mapping
from typing import Any, get_origin, get_type_hints

from kwai_bridge.admin import Invalid
from kwai_bridge.catalog.documents import plain
from kwai_bridge.config import PLATFORMS, SECRET_FIELDS, StoreConfig

LABELS = {
    "id": "Store id",
    "platform": "Platform",
    "shop": "Shop address",
    "webhook_secrets": "Webhook secrets",
    "pixel_id": "Kwai pixel id",
    "access_token": "Kwai access token",
    "test_mode": "Test mode (events go to Kwai's test tools, not to campaigns)",
    "send_method": "How events are sent (post or get)",
    "events": "Events sent",
    "topic_events": "Event name per topic",
    "value": "Purchase value (total or subtotal)",
    "content_id": "Content id (product, variant or sku)",
    "content_type": "Content type (product or product_group)",
    "mapping_id": "Mapping id (customer_id, email_sha256, phone_sha256 or empty)",
    "currency_rates": "Currency rates",
    "report_currency": "Report currency",
    "click_params": "Click id parameters",
    "storefront_domains": "Storefront domains",
    "click_window_days": "Click window (days)",
    "late_binding_hours": "Late binding (hours)",
    "consent_mode": "Ask for consent before keeping a click",
    "clicks_per_minute": "Clicks per minute",
    "max_clicks": "Clicks kept",
    "click_tokens": "Server click tokens",
    "quiet_hours": "Quiet after (hours)",
    "alert_webhook_url": "Alert webhook URL",
    "admin_api_token": "Admin API access token (Shopify, Shopline)",
    "consumer_key": "REST API consumer key (WooCommerce)",
    "consumer_secret": "REST API consumer secret (WooCommerce)",
    "admin_api_url": "Admin API address",
    "reconcile_minutes": "Reconcile every (minutes)",
    "reconcile_backfill_hours": "First reconciliation looks back (hours)",
    "subscription_check_minutes": "Check subscriptions every (minutes)",
    "event_triggers": "Event triggers",
    "subscription_renewals": "Subscription renewals (skip or purchase)",
}
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
    "alert_webhook_url": "this store's own alerts also go here (a Slack-compatible incoming webhook)",
    "admin_api_token": "the custom app's token: lets the bridge set up its webhooks and recover missed orders",
    "consumer_key": "WooCommerce → Settings → Advanced → REST API, read/write",
    "consumer_secret": "the key's secret",
    "admin_api_url": "empty: the platform's address for the shop",
    "reconcile_minutes": "0: the process setting (KWAI_BRIDGE_RECONCILE_MINUTES)",
    "reconcile_backfill_hours": "0: the process setting (KWAI_BRIDGE_RECONCILE_BACKFILL_HOURS)",
    "subscription_check_minutes": "0: the process setting (KWAI_BRIDGE_SUBSCRIPTION_CHECK_MINUTES)",
}
_TYPES = get_type_hints(StoreConfig)


def label(name: str) -> str:
    """What the form calls a field: a phrase, not its name in the stores file (which the
    help line under it gives)."""
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def _kind(name: str) -> str:
    kind = _TYPES[name]
    origin = get_origin(kind) or kind
    if name == "platform":
        return "select"
    if kind is bool:
        return "checkbox"
    if kind is int:
        return "number"
    if origin is tuple:
        return "lines"
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return "table"
    return "text"


@dataclass(frozen=True)
class Field:
    """One input of the store form."""

    name: str
    kind: str  # text, number, checkbox, lines, table, select
    value: Any
    required: bool
    secret: bool
    help: str = ""
    choices: tuple[str, ...] = ()
    label: str = ""

    @property
    def removable(self) -> bool:
        """An optional secret, which an edit may remove rather than only replace."""
        return self.secret and not self.required


def _shown(name: str, value: Any) -> Any:
    value = plain(value)
    if _kind(name) == "lines":
        return "\n".join(value)
    if _kind(name) == "table":
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
            value = submitted.get(name, "") if _kind(name) != "checkbox" else name in submitted
        out.append(Field(name, _kind(name), value, required=f.default is MISSING and f.default_factory is MISSING,
                         secret=name in SECRET_FIELDS, help=HELP.get(name, ""),
                         choices=PLATFORMS if name == "platform" else (), label=label(name)))
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
    is not in the result) unless its "remove" box is ticked; creating, an empty optional
    field takes its default."""
    entry: dict[str, Any] = {}
    for f in fields(StoreConfig):
        name, kind = f.name, _kind(f.name)
        optional = f.default is not MISSING or f.default_factory is not MISSING
        if kind == "checkbox":
            entry[name] = name in form
            continue
        raw = form.get(name, "")
        if name in SECRET_FIELDS and not raw.strip():
            if editing and optional and f"remove_{name}" in form:
                entry[name] = f.default if f.default is not MISSING else plain(f.default_factory())
            continue
        if not raw.strip() and not editing and optional:
            continue
        if kind == "lines":
            entry[name] = [line.strip() for line in raw.splitlines() if line.strip()]
        elif kind == "table":
            entry[name] = _table(name, raw)
        elif kind == "number":
            entry[name] = int(raw.strip()) if raw.strip().lstrip("-").isdigit() else raw
        else:
            entry[name] = raw.strip()
    if editing:
        entry.pop("id", None)
    return entry


__all__ = ["Field", "entry_from_form", "form_fields", "label"]
