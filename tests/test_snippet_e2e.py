"""The snippet served by the real bridge, in headless Chromium, on stand-in Shopify and
WooCommerce storefronts: the click is kept, the cart attribute written, POST /clicks
stores the mapping in the bridge, and signed webhooks carrying no click id reach the
fake Kwai with it once the dispatcher runs."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from datetime import datetime, timezone
from random import Random
from typing import Any, Iterator

import pytest
import requests
from werkzeug.serving import make_server

from kwai_bridge.attribution import ClickStore
from kwai_bridge.worker import Dispatcher
from kwai_bridge.kwai.client import KwaiClient
from server import create_app
from tests.browser import browser_page, page, visit  # noqa: F401 (fixtures)
from tests.conftest import fixture_bytes
from tests.converting import convert
from tests.fake_kwai import FakeKwai
from tests.serving import SECRETS, SHOPS, store_entry, write_stores
from tests.signing import headers_for
from tests.storefront import Response, Storefront

pytestmark = pytest.mark.browser

ORDER = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
CART = json.loads(fixture_bytes("shopify/shopify_carts_create.json", shop=SHOPS["shopify"]))
WOO_ORDER = json.loads(fixture_bytes("woocommerce/woocommerce_order_created.json"))
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
CART_TOKEN = "c1-7f3a9e"  # the stand-in's cart
SCRIPTS = {"snippet.js": "/snippet/{}.js", "shopify-pixel.js": "/snippet/{}/pixel.js"}


class BridgedStorefront(Storefront):
    """A stand-in shop whose `/kwai.js` and `/pixel.js` are the bridge's own answers."""

    bridge_url = ""
    store_id = ""

    def _script(self, name: str) -> Response:
        answer = requests.get(self.bridge_url + SCRIPTS[name].format(self.store_id), timeout=5)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/javascript")
        return Response(200, answer.text, "application/javascript")


class Bridge:
    """The real app on a loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def runtime(self) -> Any:
        return self.app.extensions["kwai_bridge.runtime"]

    def webhook(self, platform: str, store_id: str, topic: str, payload: dict) -> None:
        body = json.dumps(payload).encode()
        headers = headers_for(platform, topic, shop=SHOPS[platform], secret=SECRETS[platform], body=body)
        answer = requests.post(f"{self.url}/webhooks/{platform}/{store_id}", data=body, headers=headers, timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == "received", answer.text
        convert(self.app)  # the worker's converter, moments later

    def wait_for_click(self, store_id: str, **identifiers: str) -> dict[str, str]:
        """The click ids the bridge holds for `identifiers`, once all are there (5 s at most)."""
        store = ClickStore(self.runtime.engine)
        deadline = time.monotonic() + 5
        while True:
            found = {k: c.click_id for k, c in store.lookup(store_id, identifiers, since=EPOCH).items()}
            if len(found) == len(identifiers) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def dispatch(self, kwai: FakeKwai) -> dict[str, int]:
        client = KwaiClient(kwai.base_url, read_timeout=2)
        try:
            return Dispatcher(outbox=self.runtime.outbox, registry=self.runtime.registry, client=client,
                              concurrency=2, lease_seconds=60, rng=Random(5)).run(once=True)
        finally:
            client.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def world(tmp_path, sqlite_url) -> Iterator[tuple[Bridge, BridgedStorefront, BridgedStorefront]]:
    shop = BridgedStorefront(endpoint="http://127.0.0.1:9/unused", platform="shopify")
    woo = BridgedStorefront(endpoint="http://127.0.0.1:9/unused", platform="woocommerce")
    stores = write_stores(tmp_path / "stores.toml", [
        store_entry("shopify", "acme", storefront_domains=[shop.url]),
        store_entry("woocommerce", "woo", storefront_domains=[woo.url]),
    ])
    bridge = Bridge(create_app({"DATABASE_URL": sqlite_url, "STORES": str(stores)}))
    for front, store_id in ((shop, "acme"), (woo, "woo")):
        front.bridge_url, front.store_id = bridge.url, store_id
    yield bridge, shop, woo
    for closing in (shop, woo, bridge):
        closing.close()


def stored_names(bridge: Bridge, *names: str, timeout: float = 10) -> set[str]:
    """The event names the outbox holds, once it holds `names` (the snippet's storefront
    events go out with keepalive as the page moves on) or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        found = {r.event_name for r in bridge.runtime.outbox.list_events()}
        if set(names) <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def cookie(page: Any) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "_kwai_click_id"), None)


def test_shopify_storefront_snippet_and_pixel_attribute_webhooks_without_click_ids(page, world, kwai):
    bridge, shop, _ = world
    bridge.webhook("shopify", "acme", "carts/create", {**CART, "id": CART_TOKEN, "token": CART_TOKEN})
    (waiting,) = bridge.runtime.outbox.list_events()
    assert waiting.status == "unattributed"

    visit(page, shop.url + "/products/x?click_id=Kw%2BE2e%2F1%3D")
    click = "Kw+E2e/1="
    assert cookie(page) == click
    assert shop.cart_updates == [{"attributes": {"__kwai_click_id": click}}]
    assert bridge.wait_for_click("acme", cart_token=CART_TOKEN) == {"cart_token": click}
    (bound,) = bridge.runtime.outbox.list_events()
    assert (bound.status, bound.event.click_id, bound.click_source) == ("pending", click, "click_store:cart_token")

    page.goto(shop.url + "/pixel-test")  # Shopify's checkout: the custom pixel reports the order
    completed = {"data": {"checkout": {"token": "chk-e2e", "order": {"id": "820982911946154508"}}}}
    page.evaluate("event => window.firePixelEvent('checkout_completed', event)", completed)
    assert bridge.wait_for_click("acme", checkout_token="chk-e2e") == {"checkout_token": click}
    bridge.webhook("shopify", "acme", "orders/paid", {
        **ORDER, "test": False, "financial_status": "paid", "checkout_token": "chk-e2e", "cart_token": None,
        "note_attributes": [], "landing_site": None})

    assert bridge.dispatch(kwai) == {"sent": 2}
    assert sorted((r.fields["event_name"], r.fields["clickid"]) for r in kwai.successes()) == [
        ("EVENT_ADD_TO_CART", click), ("EVENT_PURCHASE", click)]
    sources = {r.event_name: r.click_source for r in bridge.runtime.outbox.list_events()}
    assert sources == {"EVENT_ADD_TO_CART": "click_store:cart_token", "EVENT_PURCHASE": "click_store:checkout_token"}


def test_shopify_express_checkout_with_a_keyed_cart_token_is_attributed(page, world, kwai):
    bridge, shop, _ = world
    shop.empty_cart()  # a new shopper: no cart until the first add
    visit(page, shop.url + "/products/x?click_id=Kw%2BKeyed%2F2%3D")
    click = "Kw+Keyed/2="
    page.click("#add-to-cart")  # the cart and its lasting token are created: `<token>?key=<key>`
    keyed = None
    deadline = time.monotonic() + 10
    while keyed is None and time.monotonic() < deadline:
        keyed = shop.cart["token"]
        time.sleep(0.05)
    token = keyed.split("?key=")[0]
    assert "?key=" in keyed and bridge.wait_for_click("acme", cart_token=token) == {"cart_token": click}
    # An express checkout: the order names the cart (without the key) and carries nothing else.
    bridge.webhook("shopify", "acme", "orders/paid", {
        **ORDER, "test": False, "financial_status": "paid", "cart_token": token, "checkout_token": "chk-express",
        "note_attributes": [], "landing_site": None})
    # the snippet also reported the add itself (tests/test_storefront_browser.py)
    assert stored_names(bridge, "EVENT_ADD_TO_CART") == {"EVENT_ADD_TO_CART", "EVENT_PURCHASE"}
    assert bridge.dispatch(kwai) == {"sent": 2}
    assert sorted((r.fields["event_name"], r.fields["clickid"]) for r in kwai.successes()) == [
        ("EVENT_ADD_TO_CART", click), ("EVENT_PURCHASE", click)]
    sources = {r.event_name: r.click_source for r in bridge.runtime.outbox.list_events()}
    assert sources == {"EVENT_ADD_TO_CART": "storefront", "EVENT_PURCHASE": "click_store:cart_token"}


def test_the_hidden_cart_attribute_reaches_the_order(page, world, kwai):
    bridge, shop, _ = world
    visit(page, shop.url + "/?click_id=Hidden%2B3")
    (written,) = shop.cart_updates
    assert list(written["attributes"]) == ["__kwai_click_id"]  # private: not shown to the shopper
    # Shopify carries cart attributes, private ones too, to the order's note_attributes.
    notes = [{"name": name, "value": value} for name, value in shop.cart["attributes"].items()]
    bridge.webhook("shopify", "acme", "orders/paid", {
        **ORDER, "test": False, "financial_status": "paid", "cart_token": None, "checkout_token": None,
        "note_attributes": notes, "landing_site": None})
    assert bridge.dispatch(kwai) == {"sent": 1}
    assert [r.fields["clickid"] for r in kwai.successes()] == ["Hidden+3"]
    assert {r.click_source for r in bridge.runtime.outbox.list_events()} == {"attribute"}


def test_woocommerce_checkout_and_order_received_attribute_the_order_webhook(page, world, kwai):
    bridge, _, woo = world
    visit(page, woo.url + "/?click_id=Woo%2BE2e%3D")
    click = "Woo+E2e="
    assert cookie(page) == click
    page.goto(woo.url + "/checkout/")
    page.fill("#billing_email", " John.Doe@Example.com ")
    page.click("#place_order")
    email = hashlib.sha256(b"john.doe@example.com").hexdigest()
    assert bridge.wait_for_click("woo", email_sha256=email) == {"email_sha256": click}

    visit(page, woo.url + "/checkout/order-received/727/?key=wc_order_58d2d042d1d")
    assert bridge.wait_for_click("woo", order_id="727") == {"order_id": click}
    bridge.webhook("woocommerce", "woo", "order.created", WOO_ORDER)  # no click id anywhere in it

    # the snippet also reported the checkout page and its payment step
    stored_names(bridge, "EVENT_INITIATED_CHECKOUT", "EVENT_ADD_PAYMENT_INFO")
    assert bridge.dispatch(kwai) == {"sent": 4}
    assert sorted((r.fields["event_name"], r.fields["clickid"]) for r in kwai.successes()) == [
        ("EVENT_ADD_PAYMENT_INFO", click), ("EVENT_INITIATED_CHECKOUT", click), ("EVENT_PLACE_ORDER", click),
        ("EVENT_PURCHASE", click)]
    sources = {r.event_name: r.click_source for r in bridge.runtime.outbox.list_events()}
    assert sources == {"EVENT_ADD_PAYMENT_INFO": "storefront", "EVENT_INITIATED_CHECKOUT": "storefront",
                       "EVENT_PLACE_ORDER": "click_store:order_id", "EVENT_PURCHASE": "click_store:order_id"}


def test_woocommerce_stripped_landing_url_waits_for_the_snippets_click(page, world, kwai):
    bridge, _, woo = world
    escaped = "Wp8Yq%2FQt2g%2BZx%3D%3D"  # what Kwai put on the landing URL: Wp8Yq/Qt2g+Zx==
    visit(page, woo.url + "/?utm_source=kwai&click_id=" + escaped)
    click = "Wp8Yq/Qt2g+Zx=="
    assert cookie(page) == click
    # WordPress kept the landing URL with its escapes removed: Wp8YqQt2gZx, a wrong id.
    stripped = re.sub(r"%[0-9A-Fa-f]{2}", "", woo.url + "/?utm_source=kwai&click_id=" + escaped)
    order = {**WOO_ORDER, "meta_data": [{"id": 9, "key": "_wc_order_attribution_session_entry", "value": stripped}]}
    bridge.webhook("woocommerce", "woo", "order.created", order)
    waiting = bridge.runtime.outbox.list_events()
    assert {(e.status, e.event.click_id) for e in waiting} == {("unattributed", None)}
    assert all("_wc_order_attribution_session_entry was not used" in e.click_note for e in waiting)
    assert bridge.dispatch(kwai) == {} and kwai.received == []  # nothing goes out with the corrupted id

    visit(page, woo.url + "/checkout/order-received/727/?key=wc_order_58d2d042d1d")  # the snippet's click
    assert bridge.wait_for_click("woo", order_id="727") == {"order_id": click}
    assert bridge.dispatch(kwai) == {"sent": 2}
    assert sorted((r.fields["event_name"], r.fields["clickid"]) for r in kwai.successes()) == [
        ("EVENT_PLACE_ORDER", click), ("EVENT_PURCHASE", click)]
