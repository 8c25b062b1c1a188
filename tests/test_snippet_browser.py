"""The storefront snippet and the Shopify custom pixel, run in headless Chromium against
loopback stand-ins of a shop and of the bridge's click endpoint (tests/storefront.py)."""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Iterator

import pytest

from tests.browser import browser_page, page, visit  # noqa: F401 (fixtures)
from tests.storefront import STATIC, ClicksRecorder, Storefront

pytestmark = pytest.mark.browser

DAY_MS = 86_400_000
STORE_CLICK = """([id, ageDays]) => {
  localStorage.setItem("kwai_click_id", JSON.stringify({id: id, ts: Date.now() - ageDays * 864e5}));
  document.cookie = "_kwai_click_id=" + id + "; path=/";
}"""


@pytest.fixture
def recorder() -> Iterator[ClicksRecorder]:
    recorder = ClicksRecorder()
    yield recorder
    recorder.close()
    assert recorder.rejected == [], "the snippet sent bodies the bridge would refuse"


@pytest.fixture
def open_shop(recorder: ClicksRecorder) -> Iterator[Callable[[str], Storefront]]:
    """Start a storefront for a platform whose snippet posts to the recorder."""
    opened: list[Storefront] = []

    def open_shop(platform: str) -> Storefront:
        shop = Storefront(endpoint=recorder.endpoint("acme"), platform=platform)
        recorder.allowed_origins.add(shop.url)
        opened.append(shop)
        return shop

    yield open_shop
    for shop in opened:
        shop.close()


@pytest.fixture
def shop(open_shop: Callable[[str], Storefront]) -> Storefront:
    return open_shop("shopify")


@pytest.fixture
def woo(open_shop: Callable[[str], Storefront]) -> Storefront:
    return open_shop("woocommerce")


def kept(page: Any) -> tuple[str | None, str | None]:
    """The click id in the cookie and in localStorage."""
    cookie = next((c["value"] for c in page.context.cookies() if c["name"] == "_kwai_click_id"), None)
    record = page.evaluate("JSON.parse(localStorage.getItem('kwai_click_id'))")
    return cookie, record["id"] if record else None


def test_shopify_landing_keeps_click_id_and_sends_it_once(page: Any, shop: Storefront, recorder: ClicksRecorder):
    visit(page, shop.url + "/products/x?click_id=AbC%2Bd%2Fe%3D%3D+x")
    assert page.evaluate("window.kwaiBridge.clickId()") == "AbC+d/e==+x"
    assert kept(page) == ("AbC+d/e==+x", "AbC+d/e==+x")
    cookie = next(c for c in page.context.cookies() if c["name"] == "_kwai_click_id")
    assert (cookie["path"], cookie["sameSite"], cookie["secure"]) == ("/", "Lax", False)
    assert abs(cookie["expires"] - (time.time() + 30 * 86400)) < 120
    record = page.evaluate("JSON.parse(localStorage.getItem('kwai_click_id'))")
    assert abs(record["ts"] - time.time() * 1000) < 120_000
    # the private attribute (hidden at checkout), and the token without Shopify's ?key=
    assert shop.cart_updates == [{"attributes": {"__kwai_click_id": "AbC+d/e==+x"}}]
    assert shop.cart["token"].startswith("c1-7f3a9e?key=")
    assert recorder.bodies() == [{"click_id": "AbC+d/e==+x", "cart_token": "c1-7f3a9e"}]

    visit(page, shop.url + "/")
    assert page.evaluate("window.kwaiBridge.clickId()") == "AbC+d/e==+x"
    assert len(shop.cart_updates) == 1
    assert len(recorder.bodies()) == 1


def test_shopline_landing_uses_shoplines_cart_api(page: Any, open_shop: Callable[[str], Storefront],
                                                  recorder: ClicksRecorder):
    shopline = open_shop("shopline")  # serves only Shopline's paths: /cart.js is a 404 there
    visit(page, shopline.url + "/products/x?click_id=Sl%2B1%3D")
    assert kept(page) == ("Sl+1=", "Sl+1=")
    assert shopline.cart_updates == [{"attributes": {"_kwai_click_id": "Sl+1="}}]
    assert recorder.bodies() == [{"click_id": "Sl+1=", "cart_token": "c1-7f3a9e"}]


@pytest.mark.parametrize("platform", ["shopify", "shopline"])
def test_a_cart_that_refuses_the_attribute_still_gets_its_token_bound(
        browser_page: Any, open_shop: Callable[[str], Storefront], recorder: ClicksRecorder, platform: str):
    store = open_shop(platform)
    store.refuse_cart_updates = True
    noise: list[str] = []
    browser_page.on("console", lambda message: noise.append(message.text))
    browser_page.on("pageerror", lambda error: noise.append(f"uncaught: {error}"))
    visit(browser_page, store.url + "/?click_id=Refused1")
    assert store.cart_updates == []
    assert recorder.bodies() == [{"click_id": "Refused1", "cart_token": "c1-7f3a9e"}]
    # the browser's own line for the refused update, and nothing from the snippet
    assert len(noise) == 1 and "500" in noise[0], noise


def test_cart_already_holding_the_click_id_is_not_updated(page: Any, open_shop: Callable[[str], Storefront],
                                                         recorder: ClicksRecorder):
    shopline = open_shop("shopline")  # Shopline's attributes can be read back; Shopify's private ones cannot
    shopline.cart["attributes"]["_kwai_click_id"] = "Same1"
    visit(page, shopline.url + "/?click_id=Same1")
    assert shopline.cart_updates == []
    assert recorder.bodies() == [{"click_id": "Same1", "cart_token": "c1-7f3a9e"}]


@pytest.mark.parametrize("platform, attribute", [("shopify", "__kwai_click_id"), ("shopline", "_kwai_click_id")])
def test_a_token_that_changes_at_the_first_add_to_cart_is_bound(
        page: Any, open_shop: Callable[[str], Storefront], recorder: ClicksRecorder, platform: str, attribute: str):
    store = open_shop(platform)
    store.empty_cart()  # a fresh session: every read answers another token until an item is added
    visit(page, store.url + "/products/x?click_id=First%2BAdd%3D")
    visit(page, store.url + "/products/x")
    assert store.cart_reads == 2
    assert (store.cart_updates, recorder.bodies()) == ([], [])  # no token worth binding yet

    page.click("#add-to-cart")  # the theme's Ajax add creates the cart and its lasting token
    bodies = recorder.wait_for(1, timeout=10)
    created = store.cart["token"].split("?")[0]
    assert bodies == [{"click_id": "First+Add=", "cart_token": created}]
    page.evaluate("window.kwaiBridge.settled()")
    assert store.cart_updates == [{"attributes": {attribute: "First+Add="}}]

    page.click("#add-to-cart")  # a second item: the token stays, nothing is sent or written again
    page.evaluate("window.addedToCart.then(() => new Promise(done => setTimeout(done, 500)))")
    visit(page, store.url + "/")
    page.evaluate("window.kwaiBridge.settled()")
    assert store.cart["item_count"] == 2
    assert len(recorder.bodies()) == 1 and len(store.cart_updates) == 1


@pytest.mark.parametrize("path, expected", [
    ("/#click_id=Frag%2B1%3D", "Frag+1="),
    ("/#/route?click_id=Hash_-1", "Hash_-1"),
    ("/?click_id=first&click_id=&click_id=second&click_id=", "second"),
    ("/?click_id=%2541", "%41"),                # decoded exactly once
    ("/?click_id=bad%E0%A4%A", "bad%E0%A4%A"),  # a malformed escape is kept as it came
    ("/?click_id=fromQuery&x=1#click_id=fromFragment", "fromQuery"),
    ("/?click_id=++a+", "++a+"),
    ("/?click_id=&pixel_id=9", None),
    ("/?utm_source=kwai", None),
])
def test_click_id_read_from_the_landing_url(page: Any, shop: Storefront, path: str, expected: str | None):
    visit(page, shop.url + path)
    assert page.evaluate("window.kwaiBridge.clickId()") == expected
    assert kept(page)[1] == expected
    if expected is not None:
        assert page.evaluate("decodeURIComponent(document.cookie.split('_kwai_click_id=')[1])") == expected


def test_newer_click_replaces_the_older_one(page: Any, shop: Storefront, recorder: ClicksRecorder):
    visit(page, shop.url + "/?click_id=Older1")
    first = page.evaluate("JSON.parse(localStorage.getItem('kwai_click_id')).ts")
    visit(page, shop.url + "/products/x?click_id=Newer2")
    assert kept(page) == ("Newer2", "Newer2")
    assert page.evaluate("JSON.parse(localStorage.getItem('kwai_click_id')).ts") >= first
    assert shop.cart["attributes"] == {"__kwai_click_id": "Newer2"}
    assert recorder.bodies() == [{"click_id": "Older1", "cart_token": "c1-7f3a9e"},
                                 {"click_id": "Newer2", "cart_token": "c1-7f3a9e"}]


@pytest.mark.parametrize("age_days, window_days, used", [
    (29, 30, True),
    (31, 30, False),
    (0.5, 1, True),
    (2, 1, False),
])
def test_a_stored_click_older_than_the_window_is_not_used(
        page: Any, shop: Storefront, recorder: ClicksRecorder, age_days: float, window_days: int, used: bool):
    shop.settings["windowDays"] = window_days
    page.goto(shop.url + "/blank")
    page.evaluate(STORE_CLICK, ["Stored1", age_days])
    visit(page, shop.url + "/products/x")
    if used:
        assert page.evaluate("window.kwaiBridge.clickId()") == "Stored1"
        assert recorder.bodies() == [{"click_id": "Stored1", "cart_token": "c1-7f3a9e"}]
    else:
        assert page.evaluate("window.kwaiBridge.clickId()") is None
        assert kept(page) == (None, None)
        assert (shop.cart_updates, recorder.bodies()) == ([], [])


# Consent stubs remember the choice in sessionStorage, as a consent banner would.
SHOPIFY_PRIVACY = """window.Shopify = {customerPrivacy: {
  marketingAllowed: function () { return sessionStorage.getItem("consent") === "yes"; },
  currentVisitorConsent: function () { return {marketing: this.marketingAllowed() ? "yes" : "no"}; }}};"""
WP_CONSENT = """window.wp_has_consent = function (category) {
  return category === "marketing" && sessionStorage.getItem("consent") === "yes"; };"""


GRANT = "sessionStorage.setItem('consent', 'yes'); document.dispatchEvent(new CustomEvent(%s))"
WITHDRAW = "sessionStorage.removeItem('consent'); document.dispatchEvent(new CustomEvent(%s))"


@pytest.mark.parametrize("platform, stub, grant, withdraw", [
    ("shopify", SHOPIFY_PRIVACY,
     GRANT % "'visitorConsentCollected', {detail: {marketingAllowed: true}}",
     WITHDRAW % "'visitorConsentCollected', {detail: {marketingAllowed: false}}"),
    ("shopify", SHOPIFY_PRIVACY, GRANT % "'visitorConsentCollected'",
     WITHDRAW % "'visitorConsentCollected', {detail: {marketingAllowed: false}}"),
    ("woocommerce", WP_CONSENT,
     GRANT % "'wp_listen_for_consent_change', {detail: {marketing: 'allow'}}",
     WITHDRAW % "'wp_listen_for_consent_change', {detail: {marketing: 'deny'}}"),
], ids=["shopify-event-detail", "shopify-api", "wp-consent-api"])
def test_consent_mode_keeps_and_sends_nothing_until_marketing_consent(
        page: Any, open_shop: Callable[[str], Storefront], recorder: ClicksRecorder,
        platform: str, stub: str, grant: str, withdraw: str):
    shop = open_shop(platform)
    shop.settings["consentMode"] = True
    page.add_init_script(stub)
    visit(page, shop.url + "/?click_id=Consent1")
    assert page.evaluate("window.kwaiBridge.clickId()") is None
    assert kept(page) == (None, None)
    assert (shop.cart_updates, recorder.bodies()) == ([], [])

    page.evaluate(grant)
    page.evaluate("window.kwaiBridge.settled()")
    assert page.evaluate("window.kwaiBridge.clickId()") == "Consent1"
    assert kept(page) == ("Consent1", "Consent1")
    if platform == "shopify":
        assert recorder.bodies() == [{"click_id": "Consent1", "cart_token": "c1-7f3a9e"}]

    visit(page, shop.url + "/products/x")  # consent already given: at once
    assert page.evaluate("window.kwaiBridge.clickId()") == "Consent1"

    page.evaluate(withdraw)
    assert page.evaluate("window.kwaiBridge.clickId()") is None
    assert kept(page) == (None, None)


@pytest.mark.parametrize("checkout, email_field, place_order", [
    ("/checkout/", "#billing_email", "#place_order"),
    ("/checkout-block/", "#email", ".wc-block-components-checkout-place-order-button span"),
])
def test_woocommerce_checkout_email_and_order_received(
        page: Any, woo: Storefront, recorder: ClicksRecorder, checkout: str, email_field: str, place_order: str):
    visit(page, woo.url + "/?click_id=Woo%2B1")
    assert recorder.bodies() == []  # nothing to tie the click to yet
    page.goto(woo.url + checkout)
    page.fill(email_field, " John.Doe@Example.com ")
    page.click(place_order)
    email_sha256 = hashlib.sha256(b"john.doe@example.com").hexdigest()
    assert recorder.wait_for(1) == [{"click_id": "Woo+1", "email_sha256": email_sha256}]

    for _ in range(2):  # a reload of the thank-you page does not send it again
        visit(page, woo.url + "/checkout/order-received/123/?key=wc_order_abc")
    assert recorder.bodies()[1:] == [{"click_id": "Woo+1", "order_id": "123", "order_key": "wc_order_abc"}]


CHECKOUT_COMPLETED = {"data": {"checkout": {"token": "chk-5e1d", "order": {"id": "820982911946154508"}}}}


@pytest.mark.parametrize("keep, expected", [
    ("both", "Pix+1"),
    ("cookie", "Pix+1"),
    ("localStorage", "Pix+1"),
    ("expired", None),
])
def test_shopify_custom_pixel_sends_the_click_on_checkout_completed(
        page: Any, shop: Storefront, recorder: ClicksRecorder, keep: str, expected: str | None):
    page.goto(shop.url + "/blank")
    page.evaluate(STORE_CLICK, ["Pix+1", 40 if keep == "expired" else 1])
    if keep == "localStorage":
        page.context.clear_cookies()
    if keep == "cookie":
        page.evaluate("localStorage.clear()")
    page.goto(shop.url + "/pixel-test")
    page.evaluate("event => window.firePixelEvent('checkout_completed', event)", CHECKOUT_COMPLETED)
    if expected is None:
        assert recorder.bodies() == []
    else:
        assert recorder.bodies() == [{"click_id": expected, "checkout_token": "chk-5e1d"}]
        assert recorder.origins == ["null"]  # from the sandbox's opaque origin, as on Shopify


def test_without_settings_the_snippet_does_nothing(page: Any, shop: Storefront, recorder: ClicksRecorder):
    page.goto(shop.url + "/blank?click_id=Bare1")
    page.add_script_tag(content=(STATIC / "snippet.js").read_text())
    assert page.evaluate("typeof window.kwaiBridge") == "undefined"
    assert kept(page) == (None, None)
    assert (shop.cart_updates, recorder.bodies()) == ([], [])


@pytest.mark.parametrize("init, sent", [
    (None, False),  # consent unknown: in consent mode that is a no
    ({"customerPrivacy": {"marketingAllowed": False}}, False),
    ({"customerPrivacy": {"marketingAllowed": True}}, True),
])
def test_shopify_custom_pixel_in_consent_mode_sends_only_with_marketing_consent(
        page: Any, shop: Storefront, recorder: ClicksRecorder, init: dict | None, sent: bool):
    shop.settings["consentMode"] = True
    page.goto(shop.url + "/blank")
    page.evaluate(STORE_CLICK, ["Pix+1", 1])
    if init is not None:
        page.add_init_script(f"window.init = {json.dumps(init)};")
    page.goto(shop.url + "/pixel-test")
    page.evaluate("event => window.firePixelEvent('checkout_completed', event)", CHECKOUT_COMPLETED)
    expected = [{"click_id": "Pix+1", "checkout_token": "chk-5e1d"}]
    assert recorder.bodies() == (expected if sent else [])
