"""The stores as values: one StoreConfig per shop, and Stores to look them up."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from adapters.funnel import DEFAULT_EVENTS
from adapters.signing import normalise_shop
from adapters.values import ConversionOptions


class ConfigError(ValueError):
    """A stores file or setting that cannot be used; the message says where and why."""

    def __init__(self, message: str, *, store: str | None = None, field: str | None = None):
        super().__init__(message)
        self.store = store
        self.field = field


class ConfigErrors(ConfigError):
    """Several problems at once (every wrong field of every store), one per line."""

    def __init__(self, errors: "list[ConfigError]"):
        super().__init__("\n".join(str(e) for e in errors),
                         store=errors[0].store if errors else None, field=errors[0].field if errors else None)
        self.errors = list(errors)


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
    # The Kwai event names the store sends; any other conversion is not stored.
    events: tuple[str, ...] = DEFAULT_EVENTS
    # hash=False: a mapping proxy is not hashable, and the id already tells stores apart
    topic_events: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    # What makes the snippet report the opt-in events: `EVENT_CONTACT a[href^="https://wa.me/"]`
    # (a click, or a form's submit) or `EVENT_SUBSCRIBE url:/pages/thanks*` (a page).
    event_triggers: tuple[str, ...] = ()
    value: str = "total"
    content_id: str = "product"
    content_type: str = "product"  # or "product_group": the store's Kwai catalog is by product group
    mapping_id: str = ""  # the identifier sent as Kwai's mapping_id: customer_id, email_sha256, phone_sha256
    subscription_renewals: str = "skip"  # or "purchase": a renewal order is sent as a purchase
    currency_rates: Mapping[str, Decimal] = field(default_factory=_empty_mapping, hash=False)
    report_currency: str = ""
    click_params: tuple[str, ...] = ("click_id",)
    storefront_domains: tuple[str, ...] = ()
    click_window_days: int = 30
    late_binding_hours: int = 24
    consent_mode: bool = False
    clicks_per_minute: int = 600  # click requests to the store a minute, all addresses together
    max_clicks: int = 100_000  # click-store entries kept for the store; the oldest go first
    # Bearer tokens of the store's own servers: a click posted with one needs no browser
    # Origin and may name any identifier (see kwai_bridge.clicks).
    click_tokens: tuple[str, ...] = field(default=(), repr=False)
    # Hours a topic the store expects may stay silent before the console warns.
    quiet_hours: int = 24
    # Where this store's alerts go too, besides KWAI_BRIDGE_ALERT_WEBHOOK_URL (a
    # Slack-like URL is a credential: kept out of reprs and logs).
    alert_webhook_url: str = field(default="", repr=False)
    # The platform's Admin API (kwai_bridge.platforms): Shopify's and Shopline's access
    # token of the store's custom app, WooCommerce's REST API key pair; sealed like the
    # other credentials. `admin_api_url` "" is the platform's own address for `shop`.
    admin_api_token: str = field(default="", repr=False)
    consumer_key: str = field(default="", repr=False)
    consumer_secret: str = field(default="", repr=False)
    admin_api_url: str = ""
    # 0: the process setting of the same name (KWAI_BRIDGE_RECONCILE_MINUTES, ...).
    reconcile_minutes: int = 0
    reconcile_backfill_hours: int = 0
    subscription_check_minutes: int = 0

    def __post_init__(self) -> None:
        # Coerce the container types only, so a test may pass lists and dicts;
        # validation belongs to parse_stores, which names the file and the store.
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("webhook_secrets", "events", "event_triggers", "click_params", "storefront_domains", "click_tokens"):
            value = getattr(self, name)
            put(name, (value,) if isinstance(value, str) else tuple(value))
        put("topic_events", MappingProxyType(dict(self.topic_events)))
        put("currency_rates", MappingProxyType(
            {k: Decimal(str(v)) for k, v in dict(self.currency_rates).items()}))

    def conversion_options(self) -> ConversionOptions:
        return ConversionOptions(
            topic_events=self.topic_events, value=self.value, content_id=self.content_id,
            content_type=self.content_type, currency_rates=self.currency_rates,
            report_currency=self.report_currency, click_params=self.click_params, test_mode=self.test_mode,
            events=frozenset(self.events), mapping_id=self.mapping_id,
            subscription_renewals=self.subscription_renewals,
        )

    def has_admin_api(self) -> bool:
        """Whether the store holds the credentials its platform's Admin API asks for."""
        if self.platform == "woocommerce":
            return bool(self.consumer_key and self.consumer_secret)
        return bool(self.admin_api_token)

    def sends(self, event_name: str) -> bool:
        """Whether the store sends events of this name (its `events`)."""
        return event_name in self.events

    def origins(self) -> tuple[str, ...]:
        """The browser origins of the storefront: the shop, then each extra domain."""
        found = (origin(v) for v in (self.shop, *self.storefront_domains))
        return tuple(dict.fromkeys(o for o in found if o))


def origin(value: str) -> str:
    """`www.acme.com/x` -> `https://www.acme.com`; an explicit scheme is kept; "" when
    `value` names no host."""
    v = value.strip().lower()
    parts = urlsplit(v if "://" in v else "https://" + v)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


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


__all__ = ["ConfigError", "ConfigErrors", "StoreConfig", "Stores", "origin"]
