"""What the poison-input tests share: an app per database kept for a whole module (the
fuzz test sends thousands of deliveries), signed deliveries of every topic's sample, and
the values that once made the webhook path answer 500 on every retry."""
from __future__ import annotations

import json
import random
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from kwai_bridge import db
from server import create_app
from tests.conftest import fixture_bytes, fresh_postgres_schema
from tests.converting import convert
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for

PLATFORMS = ("shopify", "shopline", "woocommerce")
#: What a platform may answer that ends its retries: refused, or stored (received for the
#: worker to convert, or converted at once: queued, ignored, failed for reprocessing; a
#: privacy duty done, or known already).
FINAL = {"received", "queued", "ignored", "failed", "privacy", "duplicate"}


def _woo_customer() -> dict[str, Any]:
    return {"id": 25, "email": "jo@example.com", "first_name": "Jo", "role": "customer", "username": "jo",
            "date_created_gmt": "2026-11-01T10:00:00", "billing": {"email": "jo@example.com", "phone": "11 5555 0101"}}


def _paid(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "test": False, "financial_status": "paid"}


#: (platform, topic) -> a realistic payload of that topic, as the platform sends it.
BASES: dict[tuple[str, str], dict[str, Any]] = {
    ("shopify", "orders/paid"): _paid(json.loads(fixture_bytes("shopify/shopify_orders_create.json",
                                                               shop=SHOPS["shopify"]))),
    ("shopify", "orders/create"): json.loads(fixture_bytes("shopify/shopify_orders_create.json",
                                                           shop=SHOPS["shopify"])),
    ("shopify", "checkouts/create"): json.loads(fixture_bytes("shopify/shopify_checkouts_create.json")),
    ("shopify", "carts/update"): json.loads(fixture_bytes("shopify/shopify_carts_create.json")),
    ("shopify", "customers/redact"): json.loads(fixture_bytes("shopify/shopify_customers_redact.json",
                                                              shop=SHOPS["shopify"])),
    ("shopify", "customers/data_request"): json.loads(fixture_bytes("shopify/shopify_customers_data_request.json",
                                                                    shop=SHOPS["shopify"])),
    ("shopify", "shop/redact"): json.loads(fixture_bytes("shopify/shopify_shop_redact.json", shop=SHOPS["shopify"])),
    ("shopline", "orders/paid"): json.loads(fixture_bytes("shopline/shopline_orders_create.DERIVED_FROM_SDK.json",
                                                          shop=SHOPS["shopline"])),
    ("shopline", "checkouts/create"): json.loads(fixture_bytes(
        "shopline/shopline_checkouts_create.DERIVED_FROM_SDK.json", shop=SHOPS["shopline"])),
    ("shopline", "carts/create"): json.loads(fixture_bytes("shopify/shopify_carts_create.json")),
    ("shopline", "customers/create"): json.loads(fixture_bytes(
        "shopline/shopline_customers_update_docs_overview.json")),
    ("shopline", "customers/redact"): {
        **json.loads(fixture_bytes("shopify/shopify_customers_redact.json")), "shop_domain": SHOPS["shopline"]},
    ("shopline", "merchants/redact"): {"store_id": "1610418123456", "store_domain": SHOPS["shopline"],
                                       "update_time": "2026-11-01T00:00:00+08:00"},
    ("woocommerce", "order.created"): json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json")),
    ("woocommerce", "order.updated"): json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json")),
    ("woocommerce", "customer.created"): _woo_customer(),
}

# -- the values ------------------------------------------------------------------------------
SURROGATE = "\ud800"
NUL = "\x00"
#: Phone digits as shoppers type them; every one is a decimal digit but for superscripts.
DIGITS = {
    "arabic-indic": "٠١١٥٥٥٥٠١٠١",
    "extended-arabic-indic": "۰۱۱۵۵۵۵۰۱۰۱",
    "full-width": "０１１５５５５０１０１",
    "devanagari": "०११५५५५०१०१",
    "superscript": "+55 ¹¹ 5555 0101",
}
#: Longer than any id, and not compressible (PostgreSQL compresses index entries).
LONG = "".join(random.Random(9).choices("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=3000))
BIG_COUNTS = {"2^31": 2**31, "2^63": 2**63, "2^64": 2**64, "10^30": 10**30}


def body_of(payload: Any) -> bytes:
    # ensure_ascii writes a lone surrogate and a NUL as the escapes the platforms would send
    return json.dumps(payload).encode()


def changed(payload: Any, path: tuple, value: Any) -> Any:
    """A deep copy of `payload` with the value at `path` (keys and list indexes) set."""
    payload = json.loads(json.dumps(payload))
    holder = payload
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return payload


# -- the app --------------------------------------------------------------------------------
@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    """A database URL of `kind` for a whole module: a SQLite file, or a fresh PostgreSQL
    schema dropped afterwards (skipped, or failed under CI, when there is no server)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'poison.db'}"
        return
    with fresh_postgres_schema() as url:
        yield url


def make_app(url: str, tmp: Path):
    """The app with one store per platform (id = platform), answering as in production:
    an unhandled error is a 500, not an exception raised into the test."""
    stores = write_stores(tmp / "stores.toml", [store_entry(p, p) for p in PLATFORMS])
    engine = db.make_engine(url)
    db.migrate(engine)
    engine.dispose()
    app = create_app({"DATABASE_URL": url, "STORES": str(stores), "SQLITE_SYNCHRONOUS": "NORMAL"})
    app.testing = False
    return app


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def deliver(client, platform: str, topic: str, body: bytes, *, delivery_id: str | None = None,
            convert_now: bool = True, **extra: str):
    """Post `body` signed as the platform signs it, to the platform's store; then, unless
    `convert_now` is false, let the worker's converter make the events of what was received."""
    headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body,
                          delivery_id=delivery_id or uuid.uuid4().hex[:24])
    headers.update(extra)
    answer = client.post(f"/webhooks/{platform}/{platform}", data=body, headers=headers)
    if convert_now:
        convert(client.application)
    return answer


def final(answer) -> bool:
    """Whether a platform would stop retrying: a 4xx, or a 200 that stored the delivery."""
    if 400 <= answer.status_code < 500:
        return True
    return answer.status_code == 200 and answer.get_json(silent=True, force=True).get("status") in FINAL
