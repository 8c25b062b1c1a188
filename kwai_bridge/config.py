"""Configuration: the stores file (one table per shop) and the process settings.

The stores file is TOML read with `tomllib`; any string in it may be written
`"${ENV_NAME}"` to take its value from the environment, so secrets stay out of the file.
Process settings come from `KWAI_BRIDGE_*` environment variables. Every problem raises
ConfigError with a sentence naming the store and field (or the variable), never a value
that could be a secret.
"""
from __future__ import annotations

import difflib
import logging
import os
import re
import signal
import threading
import tomllib
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from adapters.signing import normalise_shop
from adapters.values import ConversionOptions
from kwai_bridge.kwai.events import CURRENCIES, EVENT_NAMES

log = logging.getLogger(__name__)

PLATFORMS = ("shopify", "shopline", "woocommerce")
EXAMPLE_FILE = "deploy/stores.example.toml"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ENV_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class ConfigError(ValueError):
    """A stores file or setting that cannot be used; the message says where and why."""

    def __init__(self, message: str, *, store: str | None = None, field: str | None = None):
        super().__init__(message)
        self.store = store
        self.field = field


def _empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StoreConfig:
    """One shop: where its webhooks come from, how to verify them, where events go."""

    id: str
    platform: str
    shop: str
    webhook_secrets: tuple[str, ...] = field(repr=False)
    pixel_id: str
    access_token: str = field(repr=False)
    test_mode: bool = False
    send_method: str = "post"
    # hash=False: a mapping proxy is not hashable, and the id already tells stores apart
    topic_events: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    value: str = "total"
    content_id: str = "product"
    currency_rates: Mapping[str, Decimal] = field(default_factory=_empty_mapping, hash=False)
    report_currency: str = ""
    click_params: tuple[str, ...] = ("click_id",)
    storefront_domains: tuple[str, ...] = ()
    click_window_days: int = 30
    late_binding_hours: int = 24
    consent_mode: bool = False

    def __post_init__(self) -> None:
        # Coerce the container types only, so a test may pass lists and dicts;
        # validation belongs to parse_stores, which names the file and the store.
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("webhook_secrets", "click_params", "storefront_domains"):
            value = getattr(self, name)
            put(name, (value,) if isinstance(value, str) else tuple(value))
        put("topic_events", MappingProxyType(dict(self.topic_events)))
        put("currency_rates", MappingProxyType(
            {k: Decimal(str(v)) for k, v in dict(self.currency_rates).items()}))

    def conversion_options(self) -> ConversionOptions:
        return ConversionOptions(
            topic_events=self.topic_events, value=self.value, content_id=self.content_id,
            currency_rates=self.currency_rates, report_currency=self.report_currency,
            click_params=self.click_params, test_mode=self.test_mode,
        )

    def origins(self) -> tuple[str, ...]:
        """The browser origins of the storefront: the shop, then each extra domain."""
        found = (_origin(v) for v in (self.shop, *self.storefront_domains))
        return tuple(dict.fromkeys(o for o in found if o))


def _origin(value: str) -> str:
    """`www.acme.com/x` -> `https://www.acme.com`; an explicit scheme is kept."""
    v = value.strip().lower()
    parts = urlsplit(v if "://" in v else "https://" + v)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


# -- reading one [[stores]] table -------------------------------------------------------
class _Invalid(Exception):
    """A field value is wrong; the message completes `<store>: <field>: `."""


class _Unset(Exception):
    """A `${NAME}` reference names an unset environment variable."""


class _FromEnv(str):
    """A string read from the environment: int and bool fields may parse it."""


def _resolve(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        match = _ENV_RE.match(value)
        if not match:
            return value
        if match.group(1) not in environ:
            raise _Unset(match.group(1))
        return _FromEnv(environ[match.group(1)])
    if isinstance(value, list):
        return [_resolve(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, environ) for k, v in value.items()}
    return value


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Invalid("must be a non-empty string")
    return str(v).strip()


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v not in allowed:
            shown = f", not {str(v)!r}" if isinstance(v, str) else ""
            raise _Invalid(f"must be one of {', '.join(repr(a) for a in allowed)}{shown}")
        return str(v)
    return parse


def _bool(v: Any) -> bool:
    if isinstance(v, _FromEnv) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    if not isinstance(v, bool):
        raise _Invalid("must be true or false")
    return v


def _int(low: int, high: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, _FromEnv) and re.fullmatch(r"\s*-?\d+\s*", v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise _Invalid(f"must be a whole number from {low} to {high}")
        return v
    return parse


def _strings(*, non_empty_list: bool, what: str) -> Callable[[Any], tuple[str, ...]]:
    def parse(v: Any) -> tuple[str, ...]:
        if (not isinstance(v, list) or (non_empty_list and not v)
                or any(not isinstance(s, str) or not s.strip() for s in v)):
            raise _Invalid(what)
        return tuple(str(s).strip() for s in v)
    return parse


def _topic_events(v: Any) -> Mapping[str, str]:
    if not isinstance(v, dict):
        raise _Invalid('must be a table of topic = "EVENT_NAME" (or "" to ignore the topic)')
    for topic, name in v.items():
        if not isinstance(name, str) or (name and name not in EVENT_NAMES):
            raise _Invalid(f'{topic!r}: must be a Kwai event name such as "EVENT_PURCHASE", '
                           'or "" to ignore the topic')
    return {k: str(n) for k, n in v.items()}


def _currency_rates(v: Any) -> Mapping[str, Decimal]:
    if not isinstance(v, dict):
        raise _Invalid('must be a table such as {EUR = "5.80"}')
    rates = {}
    for code, rate in v.items():
        if not _CURRENCY_RE.match(code):
            raise _Invalid(f"{code!r}: must be a 3-letter upper-case currency code")
        try:
            # a TOML float goes through str so 5.8 stays 5.8, not 5.79999...
            number = None if isinstance(rate, bool) else Decimal(str(rate).strip())
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number <= 0:
            raise _Invalid(f'{code}: must be a positive decimal such as "5.80"')
        rates[code] = number
    return rates


def _domains(v: Any) -> tuple[str, ...]:
    domains = _strings(non_empty_list=False, what='must be a list of domains such as '
                       '["www.acme.com"]')(v)
    if any(not _origin(d) or " " in d for d in domains):
        raise _Invalid('must be a list of domains such as ["www.acme.com"]')
    return domains


_LIST_OF_STRINGS = "must be a non-empty list of non-empty strings"
_REQUIRED = frozenset({"id", "platform", "shop", "webhook_secrets", "pixel_id", "access_token"})
_FIELDS: dict[str, Callable[[Any], Any]] = {  # in dataclass order; the id first names the store
    "id": _text,
    "platform": _choice(*PLATFORMS),
    "shop": _text,
    "webhook_secrets": _strings(non_empty_list=True, what=_LIST_OF_STRINGS),
    "pixel_id": _text,
    "access_token": _text,
    "test_mode": _bool,
    "send_method": _choice("post", "get"),
    "topic_events": _topic_events,
    "value": _choice("total", "subtotal"),
    "content_id": _choice("product", "variant", "sku"),
    "currency_rates": _currency_rates,
    "report_currency": _choice("", *sorted(CURRENCIES)),
    "click_params": _strings(non_empty_list=True, what=_LIST_OF_STRINGS),
    "storefront_domains": _domains,
    "click_window_days": _int(1, 365),
    "late_binding_hours": _int(0, 720),
    "consent_mode": _bool,
}
assert set(_FIELDS) == {f.name for f in fields(StoreConfig)}


def _shop(platform: str, value: str) -> str:
    """A bare lower-case domain for Shopify and Shopline; a site URL for WooCommerce."""
    if platform == "woocommerce":
        url = value.lower().rstrip("/")
        url = url if "://" in url else "https://" + url
        if not urlsplit(url).netloc or " " in url:
            raise _Invalid("must be the site URL, such as https://shop.example.com")
        return url
    domain = normalise_shop(value)
    if not domain or "/" in domain or " " in domain:
        raise _Invalid(f"must be the shop's domain, such as acme.my{platform}.com")
    return domain


def _parse_store(entry: dict[str, Any], *, position: int,
                 environ: Mapping[str, str]) -> StoreConfig:
    label, store_id = f"store #{position}", None

    def fail(name: str, message: str) -> ConfigError:
        return ConfigError(f"{label}: {name}: {message}", store=store_id, field=name)

    unknown = sorted(set(entry) - set(_FIELDS))
    values: dict[str, Any] = {}
    for name, parse in _FIELDS.items():
        if unknown and (name != "id" or "id" not in entry):  # after the id, to name the store
            hint = difflib.get_close_matches(unknown[0], list(_FIELDS), n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise fail(unknown[0], "unknown field" + suggestion)
        if name not in entry:
            if name in _REQUIRED:
                raise fail(name, "is required")
            continue
        try:
            values[name] = parse(_resolve(entry[name], environ))
        except _Unset as exc:
            raise fail(name, f"environment variable {exc.args[0]} is not set") from None
        except _Invalid as exc:
            raise fail(name, str(exc)) from None
        if name == "id":
            if not _ID_RE.match(values["id"]):
                raise fail("id", "must be 1 to 64 letters, digits, _ or -, starting with a "
                                 "letter or digit (it becomes part of the webhook URL)")
            store_id = values["id"]
            label = f'store "{store_id}"'
    try:
        values["shop"] = _shop(values["platform"], values["shop"])
    except _Invalid as exc:
        raise fail("shop", str(exc)) from None
    if values.get("currency_rates") and not values.get("report_currency"):
        raise fail("report_currency", "is required when currency_rates is set "
                                      f"(one of {', '.join(sorted(CURRENCIES))})")
    return StoreConfig(**values)


# -- the whole file ---------------------------------------------------------------------
def parse_stores(text: str, *, environ: Mapping[str, str], source: str = "stores.toml") -> "Stores":
    """Parse and check a stores file; raise ConfigError naming the store and field."""
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
    try:
        configs = []
        for position, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict):
                raise ConfigError(f"store #{position}: must be a [[stores]] table")
            configs.append(_parse_store(entry, position=position, environ=environ))
        return Stores(configs)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", store=exc.store, field=exc.field) from None


def load_stores(path: str | os.PathLike[str], *, environ: Mapping[str, str]) -> "Stores":
    """Read and parse the stores file at `path`; a missing file is a ConfigError too."""
    shown = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"no stores file at {shown}: copy {EXAMPLE_FILE} there "
                          "and fill it in") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise ConfigError(f"cannot read the stores file {shown}: {reason}") from None
    return parse_stores(text, environ=environ, source=shown)


class Stores:
    """An immutable set of stores, looked up by id or by the shop a webhook names."""

    __slots__ = ("_by_id", "_by_shop")

    def __init__(self, stores: Iterable[StoreConfig] = ()):
        by_id: dict[str, StoreConfig] = {}
        by_shop: dict[tuple[str, str], StoreConfig] = {}
        for store in stores:
            if store.id in by_id:
                raise ConfigError(f'store "{store.id}": id: used by more than one store',
                                  store=store.id, field="id")
            key = (store.platform, normalise_shop(store.shop))
            if key in by_shop:
                raise ConfigError(f'store "{store.id}": shop: {store.shop} is already store '
                                  f'"{by_shop[key].id}"', store=store.id, field="shop")
            by_id[store.id] = by_shop[key] = store
        object.__setattr__(self, "_by_id", MappingProxyType(by_id))
        object.__setattr__(self, "_by_shop", MappingProxyType(by_shop))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Stores is immutable")

    def get(self, store_id: str) -> StoreConfig | None:
        return self._by_id.get(store_id)

    def find_by_shop(self, platform: str, shop_header: str | None) -> StoreConfig | None:
        """The store whose shop matches the header, ignoring case, scheme and a trailing slash."""
        return self._by_shop.get((platform, normalise_shop(shop_header))) if shop_header else None

    def __iter__(self) -> Iterator[StoreConfig]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, store_id: object) -> bool:
        return store_id in self._by_id

    def __repr__(self) -> str:
        return f"Stores({list(self._by_id)!r})"


class StoreRegistry:
    """The current Stores and why the last load failed; `reload()` swaps them safely."""

    def __init__(self, path: str | os.PathLike[str], *, environ: Mapping[str, str],
                 load: bool = True):
        self.path = os.fspath(path)
        self._environ = environ
        self._lock = threading.RLock()  # re-entrant: SIGHUP may land during a reload
        # one tuple, swapped whole, so readers never see new stores with an old error
        self._state: tuple[Stores, str | None] = (
            Stores(), f"stores not loaded yet from {self.path}")
        if load:
            self.reload()

    @property
    def stores(self) -> Stores:
        return self._state[0]

    @property
    def error(self) -> str | None:
        return self._state[1]

    def reload(self) -> bool:
        """Load the file again; on failure keep the previous stores and set `error`."""
        with self._lock:
            try:
                stores = load_stores(self.path, environ=self._environ)
            except ConfigError as exc:
                previous = self._state[0]
                self._state = (previous, str(exc))
                log.error("stores not reloaded, keeping %d store(s): %s", len(previous), exc)
                return False
            self._state = (stores, None)
        log.info("loaded %d store(s) from %s: %s", len(stores), self.path,
                 ", ".join(s.id for s in stores))
        return True

    def install_sighup(self) -> Any:
        """Reload on SIGHUP; return the previous handler (None when not on the main thread)."""
        if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
            return None  # signal.signal works only on the main thread
        return signal.signal(signal.SIGHUP, lambda signum, frame: self.reload())
