"""The stores file: TOML with one [[stores]] table per shop, read into Stores.

Any string in it may be written `"${ENV_NAME}"` to take its value from the environment,
so secrets stay out of the file. Every problem raises ConfigError with a sentence naming
the store and field, never a value that could be a secret.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import adapters
from adapters.storefront import parse_trigger
from kwai_bridge.config.event_choices import event_choices, event_names, nearest
from kwai_bridge.config.stores import ConfigError, ConfigErrors, StoreConfig, Stores, origin
from kwai_bridge.kwai.events import CURRENCIES, EVENT_NAMES
from kwai_bridge.parsing import FromEnv, Invalid, boolean, choice, integer, non_empty_string, strings

PLATFORMS = tuple(adapters.REGISTRY)
EXAMPLE_FILE = "deploy/stores.example.toml"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ENV_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


# -- reading one [[stores]] table -------------------------------------------------------
class _Unset(Exception):
    """A `${NAME}` reference names an unset environment variable."""


class _Unbraced(Exception):
    """A `$NAME` without braces: almost certainly meant as a reference."""


_UNBRACED_RE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def _resolve(value: Any, environ: Mapping[str, str] | None) -> Any:
    """`value` with every `"${NAME}"` replaced by the variable's value; with `environ`
    None (values from the database or the API), references are not read at all."""
    if environ is None:
        return value
    if isinstance(value, str):
        match = _ENV_RE.match(value)
        if not match:
            if _UNBRACED_RE.match(value):
                raise _Unbraced(_UNBRACED_RE.match(value).group(1))
            return value
        if match.group(1) not in environ:
            raise _Unset(match.group(1))
        return FromEnv(environ[match.group(1)])
    if isinstance(value, list):
        return [_resolve(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, environ) for k, v in value.items()}
    return value


def references(entry: Mapping[str, Any]) -> dict[str, Any]:
    """For each secret field written as `"${NAME}"` (or a list of them), the names:
    kept with the store, so that `stores export` can write the references back."""
    refs: dict[str, Any] = {}
    for name in SECRET_FIELDS:
        raw = entry.get(name)
        if isinstance(raw, str) and _ENV_RE.match(raw):
            refs[name] = _ENV_RE.match(raw).group(1)
        elif isinstance(raw, list):
            names = [_ENV_RE.match(v).group(1) if isinstance(v, str) and _ENV_RE.match(v) else None for v in raw]
            if any(names):
                refs[name] = names
    return refs


def _topic_events(v: Any) -> Mapping[str, str]:
    if not isinstance(v, dict):
        raise Invalid('must be a table of topic = "EVENT_NAME" (or "" to ignore the topic)')
    for topic, name in v.items():
        if not isinstance(name, str) or (name and name not in EVENT_NAMES):
            raise Invalid(f'{topic!r}: must be a Kwai event name such as "EVENT_PURCHASE", '
                          'or "" to ignore the topic')
    return {k: str(n) for k, n in v.items()}


def _currency_rates(v: Any) -> Mapping[str, Decimal]:
    if not isinstance(v, dict):
        raise Invalid('must be a table such as {EUR = "5.80"}')
    rates = {}
    for code, rate in v.items():
        if not _CURRENCY_RE.match(code):
            raise Invalid(f"{code!r}: must be a 3-letter upper-case currency code")
        try:
            # a TOML float goes through str so 5.8 stays 5.8, not 5.79999...
            number = None if isinstance(rate, bool) else Decimal(str(rate).strip())
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number <= 0:
            raise Invalid(f'{code}: must be a positive decimal such as "5.80"')
        rates[code] = number
    return rates


def event_triggers(v: Any) -> tuple[str, ...]:
    what = ('must be a list such as ["EVENT_CONTACT a[href^=\'https://wa.me/\']", '
            '"EVENT_SUBSCRIBE url:/pages/thank-you*"]')
    lines = strings(non_empty_list=False, what=what)(v)
    for line in lines:
        try:
            parse_trigger(line)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
    return tuple(dict.fromkeys(lines))


def _domains(v: Any) -> tuple[str, ...]:
    domains = strings(non_empty_list=False, what='must be a list of domains such as '
                      '["www.acme.com"]')(v)
    if any(not origin(d) or " " in d for d in domains):
        raise Invalid('must be a list of domains such as ["www.acme.com"]')
    return domains


def _click_tokens(v: Any) -> tuple[str, ...]:
    what = ("must be a list of random tokens of 32 to 512 printable characters, such as "
            "[\"${ACME_CLICK_TOKEN}\"] (make one with: openssl rand -hex 32)")
    tokens = strings(non_empty_list=False, what=what)(v)
    if any(not re.fullmatch(r"[\x21-\x7e]{32,512}", t) for t in tokens):
        raise Invalid(what)
    return tokens


def _alert_url(v: Any) -> str:
    url = non_empty_string(v).strip() if v != "" else ""
    parts = urlsplit(url)
    if url and (parts.scheme not in ("https", "http") or not parts.netloc):
        raise Invalid("must be an https:// URL that accepts a JSON POST, such as a Slack incoming webhook")
    return url


def _optional_string(v: Any) -> str:
    if not isinstance(v, str) or any(c.isspace() for c in v.strip()):
        raise Invalid("must be a string without spaces (empty: none)")  # never echoed: a credential
    return v.strip()


def _api_url(v: Any) -> str:
    url = v.strip().rstrip("/") if isinstance(v, str) else None
    parts = urlsplit(url or "")
    if url is None or (url and (parts.scheme not in ("https", "http") or not parts.netloc)):
        raise Invalid("must be the API's base URL, such as https://acme.myshopify.com/admin/api/2025-07 "
                      "(empty: derived from shop)")
    return url


_LIST_OF_STRINGS = "must be a non-empty list of non-empty strings"
_REQUIRED = frozenset({"id", "platform", "shop", "webhook_secrets", "pixel_id", "access_token"})
_FIELDS: dict[str, Callable[[Any], Any]] = {  # in dataclass order; the id first names the store
    "id": non_empty_string,
    "platform": choice(*PLATFORMS),
    "shop": non_empty_string,
    "webhook_secrets": strings(non_empty_list=True, what=_LIST_OF_STRINGS),
    "pixel_id": non_empty_string,
    "access_token": non_empty_string,
    "test_mode": boolean,
    "send_method": choice("post", "get"),
    "events": event_names,
    "topic_events": _topic_events,
    "event_triggers": event_triggers,
    "value": choice("total", "subtotal"),
    "content_id": choice("product", "variant", "sku"),
    "content_type": choice("product", "product_group"),
    "mapping_id": choice("", "customer_id", "email_sha256", "phone_sha256"),
    "subscription_renewals": choice("skip", "purchase"),
    "currency_rates": _currency_rates,
    "report_currency": choice("", *sorted(CURRENCIES)),
    "click_params": strings(non_empty_list=True, what=_LIST_OF_STRINGS),
    "storefront_domains": _domains,
    "click_window_days": integer(1, 365),
    "late_binding_hours": integer(0, 720),
    "consent_mode": boolean,
    "clicks_per_minute": integer(1, 1_000_000),
    "max_clicks": integer(10, 100_000_000),
    "click_tokens": _click_tokens,
    "quiet_hours": integer(1, 720),
    "alert_webhook_url": _alert_url,
    "admin_api_token": _optional_string,
    "consumer_key": _optional_string,
    "consumer_secret": _optional_string,
    "admin_api_url": _api_url,
    "reconcile_minutes": integer(0, 7 * 24 * 60),
    "reconcile_backfill_hours": integer(0, 90 * 24),
    "subscription_check_minutes": integer(0, 7 * 24 * 60),
}
assert set(_FIELDS) == {f.name for f in fields(StoreConfig)}
#: Fields whose values are secrets: sealed at rest, never shown or logged whole.
#: A store's alert URL is one: whoever holds a Slack-like incoming-webhook URL can post to the channel.
SECRET_FIELDS = ("webhook_secrets", "access_token", "click_tokens", "alert_webhook_url", "admin_api_token",
                 "consumer_key", "consumer_secret")
#: Fields parsed as plain strings, where a TOML number is a common slip.
_STRING_FIELDS = frozenset({"id", "shop", "pixel_id", "access_token"})


def _shop(platform: str, value: str) -> str:
    """The shop as the platform's adapter matches it (a domain, or a site URL)."""
    try:
        return adapters.REGISTRY[platform].normalise_shop_setting(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def check_store(entry: Mapping[str, Any], *, environ: Mapping[str, str] | None = None,
                label: str = "store") -> StoreConfig:
    """One store's fields checked and converted; raise ConfigErrors naming every field
    that is wrong. `environ` resolves `"${NAME}"` references (None: taken as written)."""
    store_id = entry.get("id") if isinstance(entry.get("id"), str) and _ID_RE.match(entry.get("id")) else None
    if store_id:
        label = f'store "{store_id}"'
    errors: list[ConfigError] = []

    def fail(name: str, message: str) -> None:
        errors.append(ConfigError(f"{label}: {name}: {message}", store=store_id, field=name))

    for name in sorted(set(entry) - set(_FIELDS)):
        fail(name, "unknown field" + nearest(name, _FIELDS))
    values: dict[str, Any] = {}
    for name, parse in _FIELDS.items():
        if name not in entry:
            if name in _REQUIRED:
                fail(name, "is required")
            continue
        raw = entry[name]
        try:
            values[name] = parse(_resolve(raw, environ))
        except _Unset as exc:
            fail(name, f"environment variable {exc.args[0]} is not set")
        except _Unbraced as exc:
            fail(name, f"write \"${{{exc.args[0]}}}\" to read the environment variable {exc.args[0]}")
        except Invalid as exc:
            fail(name, str(exc) + _number_hint(name, raw))
    if "id" in values and not _ID_RE.match(values["id"]):
        fail("id", "must be 1 to 64 letters, digits, _ or -, starting with a letter or digit "
                   "(it becomes part of the webhook URL)")
    if "shop" in values and "platform" in values:
        try:
            values["shop"] = _shop(values["platform"], values["shop"])
        except Invalid as exc:
            fail("shop", str(exc))
    if (values.get("currency_rates") and not values.get("report_currency")
            and not any(e.field == "report_currency" for e in errors)):
        fail("report_currency", "is required when currency_rates is set "
                                f"(one of {', '.join(sorted(CURRENCIES))})")
    if "platform" in values and not any(e.field in ("topic_events", "events", "event_triggers", "content_id") for e in errors):
        problem = event_choices(values)
        if problem is not None:
            fail(*problem)
    if errors:
        raise ConfigErrors(errors)
    return StoreConfig(**values)


def _number_hint(name: str, raw: Any) -> str:
    if name in _STRING_FIELDS and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        shown = "..." if name in SECRET_FIELDS else raw
        return f' (quote numbers: {name} = "{shown}")'
    return ""


# -- the whole file ---------------------------------------------------------------------
def parse_entries(text: str, *, environ: Mapping[str, str],
                  source: str = "stores.toml") -> list[tuple[StoreConfig, dict[str, Any]]]:
    """Every store of a stores file with its `${NAME}` references; raise ConfigErrors
    listing every problem of every store (store and field named) if any is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"line {line.group(1)}: " if line else ""
        raise ConfigError(f"{source}: {where}not valid TOML ({exc})") from None
    for key in data:
        if key != "stores":
            raise ConfigError(f"{source}: {key}: unknown top-level key (each shop is a "
                              "[[stores]] table)", field=key)
    entries = data.get("stores")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: no [[stores]] tables: add one per shop "
                          f"(see {EXAMPLE_FILE})")
    errors: list[ConfigError] = []
    parsed: list[tuple[StoreConfig, dict[str, Any]]] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            errors.append(ConfigError(f"store #{position}: must be a [[stores]] table"))
            continue
        try:
            parsed.append((check_store(entry, environ=environ, label=f"store #{position}"), references(entry)))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if not errors:
        try:
            Stores(config for config, _ in parsed)  # ids and shops unique
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigErrors([ConfigError(f"{source}: {e}", store=e.store, field=e.field) for e in errors])
    return parsed


def parse_stores(text: str, *, environ: Mapping[str, str], source: str = "stores.toml") -> Stores:
    """Parse and check a stores file; raise ConfigErrors naming each store and field."""
    return Stores(config for config, _ in parse_entries(text, environ=environ, source=source))


def read_stores_file(path: str | os.PathLike[str]) -> str:
    """The text of the stores file at `path`; a missing or unreadable file is a ConfigError."""
    shown = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no stores file at {shown}: copy {EXAMPLE_FILE} there "
                          "and fill it in") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"cannot read the stores file {shown}: {reason}") from None


def load_stores(path: str | os.PathLike[str], *, environ: Mapping[str, str]) -> Stores:
    """Read and parse the stores file at `path`; a missing file is a ConfigError too."""
    return parse_stores(read_stores_file(path), environ=environ, source=os.fspath(path))


__all__ = [
    "EXAMPLE_FILE", "PLATFORMS", "SECRET_FIELDS", "check_store", "load_stores", "parse_entries", "parse_stores",
    "read_stores_file", "references",
]
