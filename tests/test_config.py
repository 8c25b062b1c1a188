"""The stores file and the process settings: every refusal names the store and field (or
the variable) and never a secret; reloads keep the last good stores."""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest

from adapters.funnel import DEFAULT_EVENTS
from adapters.signing import hmac_sha256, matches_any
from adapters.values import ConversionOptions
from kwai_bridge.config import (
    ConfigError, StoreConfig, Stores, load_stores, parse_stores,
)
from kwai_bridge.settings import SETTINGS_DOC, Settings, TrustedProxies, settings_from_env, settings_markdown

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SECRET, TOKEN = "whsec-5ecret-one", "tok-5ecret-XYZ"
BASE = {
    "id": '"acme"',
    "platform": '"shopify"',
    "shop": '"acme.myshopify.com"',
    "webhook_secrets": f'["{SECRET}"]',
    "pixel_id": '"px-1"',
    "access_token": f'"{TOKEN}"',
}
DROP = object()


def store_toml(**fields: object) -> str:
    """One [[stores]] table: BASE with `fields` (raw TOML values) set, or dropped by DROP."""
    merged = {**BASE, **fields}
    lines = [f"{key} = {value}" for key, value in merged.items() if value is not DROP]
    return "[[stores]]\n" + "\n".join(lines) + "\n"


def parse(text: str, environ: dict[str, str] | None = None) -> Stores:
    return parse_stores(text, environ=environ or {})


# -- refusals ---------------------------------------------------------------------------
INVALID_STORE = [
    # (fields, store label, field, words in the message)
    ({"id": DROP}, "store #1", "id", "is required"),
    ({"id": '"bad id"'}, "store #1", "id", "letters, digits"),
    ({"id": '"-acme"'}, "store #1", "id", "starting with"),
    ({"id": '"' + "a" * 65 + '"'}, "store #1", "id", "1 to 64"),
    ({"platform": '"magento"'}, 'store "acme"', "platform", "'shopify', 'shopline', 'woocommerce'"),
    ({"platform": DROP}, 'store "acme"', "platform", "is required"),
    ({"shop": '""'}, 'store "acme"', "shop", "non-empty string"),
    ({"shop": '"acme.myshopify.com/admin"'}, 'store "acme"', "shop", "domain"),
    ({"webhook_secrets": "[]"}, 'store "acme"', "webhook_secrets",
     "must be a non-empty list of non-empty strings"),
    ({"webhook_secrets": '[""]'}, 'store "acme"', "webhook_secrets", "non-empty list"),
    ({"webhook_secrets": f'"{SECRET}"'}, 'store "acme"', "webhook_secrets", "non-empty list"),
    ({"webhook_secrets": "[1]"}, 'store "acme"', "webhook_secrets", "non-empty list"),
    ({"pixel_id": '""'}, 'store "acme"', "pixel_id", "non-empty string"),
    ({"pixel_id": "123"}, 'store "acme"', "pixel_id", "non-empty string"),
    ({"access_token": DROP}, 'store "acme"', "access_token", "is required"),
    ({"access_token": '"  "'}, 'store "acme"', "access_token", "non-empty string"),
    ({"send_method": '"put"'}, 'store "acme"', "send_method", "'post', 'get', not 'put'"),
    ({"topic_events": '{"orders/paid" = "EVENT_BUY"}'}, 'store "acme"', "topic_events",
     "'orders/paid': must be a Kwai event name"),
    ({"topic_events": '"orders/paid"'}, 'store "acme"', "topic_events", "table"),
    # topics are checked against the platform's, with the nearest known one
    ({"topic_events": '{"orders/payed" = "EVENT_PURCHASE"}'}, 'store "acme"', "topic_events",
     "'orders/payed' is not a shopify topic that yields an event (did you mean orders/paid?); known: "
     "checkouts/create, orders/create, orders/paid, orders/updated, carts/create, carts/update, customers/create"),
    ({"topic_events": '{"order.created" = ""}'}, 'store "acme"', "topic_events",
     "'order.created' is not a shopify topic that yields an event (did you mean orders/create?)"),
    ({"topic_events": '{"customers/redact" = ""}'}, 'store "acme"', "topic_events",
     "'customers/redact' is not a shopify topic that yields an event (did you mean customers/create?)"),
    ({"platform": '"woocommerce"', "shop": '"https://shop.example"', "topic_events": '{"orders/paid" = ""}'},
     'store "acme"', "topic_events", "'orders/paid' is not a woocommerce topic that yields an event (did you mean "
     "order.updated?); known: order.created, order.updated, customer.created"),
    # a rename names every conversion of its kind: the kind's topics must agree
    ({"topic_events": '{"orders/paid" = "EVENT_PLACE_ORDER", "orders/updated" = "EVENT_PURCHASE"}'},
     'store "acme"', "topic_events", "'orders/paid' and 'orders/updated' announce the same conversion "
     "(EVENT_PURCHASE by default): give them one name, not EVENT_PLACE_ORDER and EVENT_PURCHASE"),
    ({"topic_events": '{"carts/update" = "EVENT_ADD_TO_WISHLIST", "carts/create" = "EVENT_ADD_TO_CART"}',
      "events": '["EVENT_ADD_TO_WISHLIST", "EVENT_ADD_TO_CART"]'}, 'store "acme"', "topic_events",
     "'carts/update' and 'carts/create' announce the same conversion (EVENT_ADD_TO_CART by default)"),
    # a rename to a name the store does not send would never be sent
    ({"topic_events": '{"orders/paid" = "EVENT_SUBSCRIBE"}'}, 'store "acme"', "topic_events",
     "'orders/paid' is renamed to EVENT_SUBSCRIBE, which events does not list"),
    ({"events": '["EVENT_PURCHASE", "EVENT_PURCHSE"]'}, 'store "acme"', "events",
     "'EVENT_PURCHSE' is not one of Kwai's 32 event names (did you mean EVENT_PURCHASE?)"),
    ({"events": '"EVENT_PURCHASE"'}, 'store "acme"', "events", 'must be a list of Kwai event names'),
    ({"events": '["purchase"]'}, 'store "acme"', "events", "'purchase' is not one of Kwai's 32 event names"),
    ({"content_type": '"group"'}, 'store "acme"', "content_type", "'product', 'product_group', not 'group'"),
    ({"content_type": '"product_group"', "content_id": '"variant"'}, 'store "acme"', "content_type",
     'product_group sends each product (the group of its variants) as the content id: leave content_id at "product"'),
    ({"mapping_id": '"email"'}, 'store "acme"', "mapping_id",
     "'', 'customer_id', 'email_sha256', 'phone_sha256', not 'email'"),
    ({"value": '"net"'}, 'store "acme"', "value", "'total', 'subtotal'"),
    ({"content_id": '"handle"'}, 'store "acme"', "content_id", "'product', 'variant', 'sku'"),
    ({"currency_rates": '{eur = "5"}', "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "'eur': must be a 3-letter"),
    ({"currency_rates": '{EUR = "-1"}', "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "EUR: must be a positive decimal"),
    ({"currency_rates": '{EUR = "abc"}', "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "positive decimal"),
    ({"currency_rates": "{EUR = 0}", "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "positive decimal"),
    ({"currency_rates": "{EUR = true}", "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "positive decimal"),
    ({"currency_rates": '{EUR = "NaN"}', "report_currency": '"BRL"'}, 'store "acme"',
     "currency_rates", "positive decimal"),
    ({"currency_rates": '{EUR = "5.80"}'}, 'store "acme"', "report_currency",
     "required when currency_rates"),
    ({"report_currency": '"EUR"'}, 'store "acme"', "report_currency", "'BRL', 'IDR', 'USD'"),
    ({"click_params": "[]"}, 'store "acme"', "click_params", "non-empty list"),
    ({"click_params": '["click_id", ""]'}, 'store "acme"', "click_params", "non-empty list"),
    ({"storefront_domains": '"www.acme.com"'}, 'store "acme"', "storefront_domains", "list"),
    ({"storefront_domains": '[""]'}, 'store "acme"', "storefront_domains", "list"),
    ({"click_window_days": "0"}, 'store "acme"', "click_window_days", "from 1 to 365"),
    ({"click_window_days": "366"}, 'store "acme"', "click_window_days", "from 1 to 365"),
    ({"click_window_days": '"30"'}, 'store "acme"', "click_window_days", "whole number"),
    ({"click_window_days": "true"}, 'store "acme"', "click_window_days", "whole number"),
    ({"late_binding_hours": "-1"}, 'store "acme"', "late_binding_hours", "from 0 to 720"),
    ({"late_binding_hours": "721"}, 'store "acme"', "late_binding_hours", "from 0 to 720"),
    ({"test_mode": '"yes"'}, 'store "acme"', "test_mode", "true or false"),
    ({"consent_mode": "1"}, 'store "acme"', "consent_mode", "true or false"),
    ({"clicks_per_minute": "0"}, 'store "acme"', "clicks_per_minute", "from 1 to 1000000"),
    ({"max_clicks": "5"}, 'store "acme"', "max_clicks", "from 10 to 100000000"),
    ({"click_tokens": '"' + "t" * 40 + '"'}, 'store "acme"', "click_tokens", "must be a list of random tokens"),
    ({"click_tokens": '["short"]'}, 'store "acme"', "click_tokens", "32 to 512 printable characters"),
    ({"click_tokens": '["' + "t" * 20 + " " + "t" * 20 + '"]'}, 'store "acme"', "click_tokens", "openssl rand"),
    ({"webhook_secret": f'["{SECRET}"]'}, 'store "acme"', "webhook_secret",
     "unknown field (did you mean webhook_secrets?)"),
    ({"id": DROP, "Id": '"acme"'}, "store #1", "Id", "unknown field"),
]


@pytest.mark.parametrize("fields, label, field, words", INVALID_STORE)
def test_invalid_store_names_store_and_field(fields, label, field, words):
    with pytest.raises(ConfigError) as caught:
        parse(store_toml(**fields))
    message = str(caught.value)
    assert message.startswith(f"stores.toml: {label}: {field}: "), message
    assert words in message
    assert SECRET not in message and TOKEN not in message
    assert caught.value.field == field
    assert caught.value.store == (None if label.startswith("store #") else "acme")


@pytest.mark.parametrize("text, words", [
    (store_toml() + store_toml(), 'store "acme": id: used by more than one store'),
    (store_toml() + store_toml(id=DROP), "store #2: id: is required"),
    (store_toml() + store_toml(id='"acme-2"', shop='"ACME.myshopify.com"'),
     'store "acme-2": shop: acme.myshopify.com is already store "acme"'),
    ("[[stores]]\nid = \"acme\"\nplatform = \n", "stores.toml: line 3: not valid TOML"),
    ('[[stores]]\nid = "a"\nid = "b"\n', "stores.toml: line 3: not valid TOML"),
    ('store = "acme"\n' + store_toml(), "stores.toml: store: unknown top-level key"),
    ("", "stores.toml: no [[stores]] tables"),
    ("stores = [1]\n", "stores.toml: store #1: must be a [[stores]] table"),
])
def test_invalid_file(text, words):
    with pytest.raises(ConfigError, match=re.escape(words)) as caught:
        parse(text)
    assert SECRET not in str(caught.value)


# -- reading values ---------------------------------------------------------------------
def test_defaults():
    store = parse(store_toml()).get("acme")
    assert store == StoreConfig(id="acme", platform="shopify", shop="acme.myshopify.com",
                                webhook_secrets=(SECRET,), pixel_id="px-1", access_token=TOKEN)
    assert (store.test_mode, store.send_method, store.value, store.content_id) == (
        False, "post", "total", "product")
    assert dict(store.topic_events) == {} and dict(store.currency_rates) == {}
    assert (store.report_currency, store.click_params, store.storefront_domains) == ("", ("click_id",), ())
    assert (store.click_window_days, store.late_binding_hours, store.consent_mode) == (30, 24, False)
    assert (store.clicks_per_minute, store.max_clicks, store.click_tokens) == (600, 100_000, ())
    assert store.events == DEFAULT_EVENTS and (store.content_type, store.mapping_id) == ("product", "")
    assert store.conversion_options() == ConversionOptions(events=frozenset(DEFAULT_EVENTS))
    hash(store)  # usable as a dict key despite its mapping fields


def test_every_field_is_read():
    store = parse(store_toml(
        platform='"woocommerce"', shop='"HTTPS://Shop.Example.com/"', test_mode="true",
        send_method='"get"', topic_events='{"order.created" = "EVENT_PLACE_ORDER", "order.updated" = ""}',
        value='"subtotal"', content_id='"sku"', currency_rates='{EUR = 5.8, IDR = "0.00035", JPY = 3}',
        report_currency='"USD"', click_params='["kwai_click", "click_id"]',
        storefront_domains='["www.acme.com"]', click_window_days="7", late_binding_hours="0",
        consent_mode="true", click_tokens='["' + "k" * 64 + '"]', clicks_per_minute="60",
        max_clicks="5000", events='["EVENT_PURCHASE", "EVENT_PLACE_ORDER", "EVENT_PURCHASE"]',
        mapping_id='"email_sha256"')).get("acme")
    assert store.events == ("EVENT_PURCHASE", "EVENT_PLACE_ORDER") and store.mapping_id == "email_sha256"
    assert (store.clicks_per_minute, store.max_clicks) == (60, 5000)
    assert store.click_tokens == ("k" * 64,) and "k" * 64 not in repr(store)
    assert store.shop == "https://shop.example.com"
    assert store.currency_rates == {"EUR": Decimal("5.8"), "IDR": Decimal("0.00035"), "JPY": Decimal("3")}
    assert isinstance(store.topic_events, MappingProxyType)
    assert isinstance(store.currency_rates, MappingProxyType)
    with pytest.raises(TypeError):
        store.topic_events["x"] = "EVENT_PURCHASE"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.test_mode = False  # type: ignore[misc]
    assert store.conversion_options() == ConversionOptions(
        topic_events={"order.created": "EVENT_PLACE_ORDER", "order.updated": ""}, value="subtotal",
        content_id="sku", currency_rates=store.currency_rates, report_currency="USD",
        click_params=("kwai_click", "click_id"), test_mode=True,
        events=frozenset({"EVENT_PURCHASE", "EVENT_PLACE_ORDER"}), mapping_id="email_sha256")
    assert (store.send_method, store.click_window_days, store.late_binding_hours, store.consent_mode) == (
        "get", 7, 0, True)


def test_env_references_are_read_whole_string_and_in_lists():
    env = {"ACME_SECRET": "from-env", "ACME_TOKEN": "tok-env", "ACME_TEST": "true", "ACME_DAYS": "7"}
    store = parse(store_toml(
        webhook_secrets='["${ACME_SECRET}", "plain"]', access_token='"${ACME_TOKEN}"',
        test_mode='"${ACME_TEST}"', click_window_days='"${ACME_DAYS}"', pixel_id='"px-${ACME_TOKEN}"'),
        env).get("acme")
    assert store.webhook_secrets == ("from-env", "plain")
    assert store.access_token == "tok-env" and store.test_mode is True and store.click_window_days == 7
    assert store.pixel_id == "px-${ACME_TOKEN}"  # only the whole-string form is a reference


def test_unset_env_reference_names_store_field_and_variable_only():
    env = {"ACME_SECRET": "visible-if-leaked", "OTHER": "other-value"}
    with pytest.raises(ConfigError) as caught:
        parse(store_toml(webhook_secrets='["${ACME_SECRET}", "${ACME_SECRET_NEXT}"]'), env)
    message = str(caught.value)
    assert message == ('stores.toml: store "acme": webhook_secrets: '
                       "environment variable ACME_SECRET_NEXT is not set")
    assert "visible-if-leaked" not in message and "other-value" not in message


def test_empty_env_value_is_refused_like_an_empty_string():
    with pytest.raises(ConfigError, match='store "acme": access_token: must be a non-empty string'):
        parse(store_toml(access_token='"${ACME_TOKEN}"'), {"ACME_TOKEN": ""})


def test_rotation_either_secret_verifies():
    store = parse(store_toml(webhook_secrets='["old-secret", "new-secret"]')).get("acme")
    assert store.webhook_secrets == ("old-secret", "new-secret")
    body = b'{"id": 1}'
    for secret in ("old-secret", "new-secret"):
        signature = hmac_sha256(secret, body).hex()
        assert matches_any(signature, body, store.webhook_secrets, encodings=("hex",))
    assert not matches_any(hmac_sha256("other", body).hex(), body, store.webhook_secrets,
                           encodings=("hex",))


def test_repr_hides_secrets_and_token():
    stores = parse(store_toml())
    for text in (repr(stores.get("acme")), str(stores.get("acme")), repr(stores)):
        assert SECRET not in text and TOKEN not in text
    assert "acme" in repr(stores)


# -- lookups ----------------------------------------------------------------------------
LOOKUP = (store_toml()
          + store_toml(id='"corner"', platform='"woocommerce"', shop='"https://Shop.Example.com/"')
          + store_toml(id='"hub"', platform='"shopline"', shop='"hub.myshopline.com"'))


@pytest.mark.parametrize("platform, header, expected", [
    ("shopify", "acme.myshopify.com", "acme"),
    ("shopify", "ACME.MyShopify.com", "acme"),
    ("shopify", "https://acme.myshopify.com/", "acme"),
    ("shopify", " acme.myshopify.com ", "acme"),
    ("woocommerce", "https://shop.example.com/", "corner"),
    ("woocommerce", "http://SHOP.example.com", "corner"),
    ("woocommerce", "shop.example.com", "corner"),
    ("shopline", "HUB.myshopline.com", "hub"),
    ("shopline", "acme.myshopify.com", None),
    ("shopify", "other.myshopify.com", None),
    ("woocommerce", "https://shop.example.com/blog/", None),
    ("shopify", "", None),
    ("shopify", None, None),
])
def test_find_by_shop(platform, header, expected):
    found = parse(LOOKUP).find_by_shop(platform, header)
    assert (found.id if found else None) == expected


def test_stores_container():
    stores = parse(LOOKUP)
    assert [s.id for s in stores] == ["acme", "corner", "hub"] and len(stores) == 3
    assert "hub" in stores and stores.get("nope") is None
    with pytest.raises(AttributeError):
        stores.extra = 1  # type: ignore[attr-defined]
    assert len(Stores()) == 0


@pytest.mark.parametrize("platform, shop, domains, expected", [
    ("shopify", "acme.myshopify.com", "[]", ("https://acme.myshopify.com",)),
    ("shopify", "acme.myshopify.com", '["WWW.Acme.com", "https://acme.com/", "http://localhost:8080"]',
     ("https://acme.myshopify.com", "https://www.acme.com", "https://acme.com", "http://localhost:8080")),
    ("shopify", "acme.myshopify.com", '["acme.myshopify.com", "www.acme.com/shop"]',
     ("https://acme.myshopify.com", "https://www.acme.com")),
    ("woocommerce", "http://shop.example.com/store/", "[]", ("http://shop.example.com",)),
])
def test_origins(platform, shop, domains, expected):
    store = parse(store_toml(platform=f'"{platform}"', shop=f'"{shop}"',
                             storefront_domains=domains)).get("acme")
    assert store.origins() == expected


# -- the deploy/ examples ---------------------------------------------------------------
def test_example_stores_file_parses_with_its_references():
    text = (DEPLOY / "stores.example.toml").read_text()
    values = "\n".join(line.split("#")[0] for line in text.splitlines())  # not the comments
    names = set(re.findall(r"\$\{(\w+)\}", values))
    stores = parse_stores(text, environ={n: f"value-{n}" for n in names}, source="example")
    assert sorted(s.platform for s in stores) == ["shopify", "shopline", "woocommerce"]
    for store in stores:
        assert store.webhook_secrets and all(s.startswith("value-") for s in store.webhook_secrets)
        assert store.access_token.startswith("value-")
    env_example = (DEPLOY / "env.example").read_text()
    assert names <= set(re.findall(r"^# (\w+)=", env_example, re.M))


def test_env_example_lists_every_setting():
    env_example = (DEPLOY / "env.example").read_text()
    for variable, default, _meaning in SETTINGS_DOC:
        assert f"# {variable}=" in env_example, variable
        if default and variable != "KWAI_BRIDGE_PUBLIC_URL":
            assert f"# {variable}={default}\n" in env_example, variable


# -- process settings -------------------------------------------------------------------
def test_settings_defaults():
    settings = settings_from_env({})
    assert settings == Settings()
    assert settings.database_url == "sqlite:///kwai-bridge.db" and settings.stores == ""
    assert settings.kwai_post_url == "https://www.adsnebula.com/log/common/api"
    assert settings.kwai_get_url == "https://www.adsnebula.com/log/common/gapi"
    assert (settings.max_body_bytes, settings.dispatch_concurrency, settings.trusted_proxies) == (
        1048576, 64, TrustedProxies())
    assert not settings.trusted_proxies and settings.clicks_per_address == 120
    assert (settings.sqlite_synchronous, settings.lease_seconds, settings.poll_interval) == ("FULL", 90, 1.0)
    assert (settings.body_retention_days, settings.sent_retention_days) == (7, 30)
    assert (settings.kwai_connect_timeout, settings.kwai_timeout, settings.log_level) == (3.05, 10.0, "INFO")
    assert settings.base_url(8000) == "http://localhost:8000"


def test_settings_doc_has_a_row_for_every_field_with_its_default():
    rows = {variable: default for variable, default, meaning in SETTINGS_DOC if meaning}
    assert set(rows) == {"KWAI_BRIDGE_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert settings_from_env(rows) == Settings()  # each documented default reads as the default
    assert settings_markdown().count("\n| `KWAI_BRIDGE_") == len(SETTINGS_DOC)


def test_settings_are_read():
    settings = settings_from_env({
        "KWAI_BRIDGE_DATABASE_URL": "postgresql://bridge:pw@db/bridge",
        "KWAI_BRIDGE_KWAI_ENDPOINT": "http://127.0.0.1:9999/log/",
        "KWAI_BRIDGE_PUBLIC_URL": "https://bridge.example.com/",
        "KWAI_BRIDGE_SQLITE_SYNCHRONOUS": "normal", "KWAI_BRIDGE_LOG_LEVEL": "debug",
        "KWAI_BRIDGE_POLL_INTERVAL": "0.25", "KWAI_BRIDGE_TRUSTED_PROXIES": "1",
        "KWAI_BRIDGE_LEASE_SECONDS": " 120 ", "KWAI_BRIDGE_MAX_BODY_BYTES": "",
    })
    assert settings.kwai_post_url == "http://127.0.0.1:9999/log/api"
    assert settings.base_url(8000) == "https://bridge.example.com"
    assert (settings.sqlite_synchronous, settings.log_level, settings.poll_interval) == ("NORMAL", "DEBUG", 0.25)
    assert (settings.trusted_proxies, settings.lease_seconds, settings.max_body_bytes) == (
        TrustedProxies(hops=1), 120, 1048576)
    assert "pw@db" not in repr(settings)


def test_trusted_proxies_are_read_as_networks_or_the_weaker_hop_count():
    def read(value: str) -> TrustedProxies:
        return settings_from_env({"KWAI_BRIDGE_TRUSTED_PROXIES": value}).trusted_proxies

    assert read("10.0.0.2, 10.1.0.0/16,2001:db8::/32") == TrustedProxies(networks=(
        ipaddress.ip_network("10.0.0.2/32"), ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8::/32")))
    assert read("10.1.2.3/16").networks == (ipaddress.ip_network("10.1.0.0/16"),)  # host bits allowed
    assert read("2") == TrustedProxies(hops=2) and read("0") == TrustedProxies() and not read("0")


@pytest.mark.parametrize("variable, value, words", [
    ("DATABASE_URL", "mysql://u:hunter2@db/x", "must be sqlite:///<path> or postgresql://"),
    ("DATABASE_URL", "sqlite://", "must be sqlite:///<path>"),
    ("KWAI_ENDPOINT", "ftp://kwai/log", "must be a URL"),
    ("MAX_BODY_BYTES", "1MB", "whole number"),
    ("MAX_BODY_BYTES", "10", "from 1024"),
    ("DISPATCH_CONCURRENCY", "0", "from 1 to 256"),
    ("PUBLIC_URL", "bridge.example.com", "must be a URL"),
    ("TRUSTED_PROXIES", "-1", "from 0 to 10"),
    ("TRUSTED_PROXIES", "11", "addresses or networks separated by commas"),
    ("TRUSTED_PROXIES", "10.0.0.300", "addresses or networks"),
    ("TRUSTED_PROXIES", "10.0.0.2;10.0.0.3", "addresses or networks"),
    ("TRUSTED_PROXIES", ",", "addresses or networks"),
    ("CLICKS_PER_ADDRESS", "0", "from 1"),
    ("SQLITE_SYNCHRONOUS", "OFF", "FULL, NORMAL"),
    ("LEASE_SECONDS", "1.5", "whole number"),
    ("LEASE_SECONDS", "12", "must exceed KWAI_BRIDGE_KWAI_CONNECT_TIMEOUT + KWAI_BRIDGE_KWAI_TIMEOUT"),
    ("DISPATCHER_STALE_SECONDS", "-1", "from 0"),
    ("DISPATCHER_STALE_SECONDS", "14", "must be 0 or exceed KWAI_BRIDGE_POLL_INTERVAL + KWAI_BRIDGE_KWAI_CONNECT"),
    ("POLL_INTERVAL", "nan", "number of seconds"),
    ("POLL_INTERVAL", "0", "number of seconds"),
    ("BODY_RETENTION_DAYS", "-1", "from 0"),
    ("SENT_RETENTION_DAYS", "0", "from 1"),
    ("KWAI_CONNECT_TIMEOUT", "fast", "number of seconds"),
    ("KWAI_TIMEOUT", "inf", "number of seconds"),
    ("LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR"),
])
def test_invalid_settings_name_the_variable(variable, value, words):
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"KWAI_BRIDGE_" + variable: value})
    message = str(caught.value)
    assert message.startswith(f"KWAI_BRIDGE_{variable}: ") and words in message, message
    assert caught.value.field == "KWAI_BRIDGE_" + variable
    assert "hunter2" not in message
