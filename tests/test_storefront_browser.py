"""Storefront events in headless Chromium: the snippet on fake storefronts of each
platform (tests/storefront.py) and Shopify's checkout pixel post to the real bridge over
loopback (tests/bridge_site.py); the dispatcher then delivers to the fake Kwai, which
must receive each event once, with the shopper's click id, its properties and value."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.bridge_site import BridgeSite
from tests.browser import browser_page, page, visit  # noqa: F401 (fixtures)
from tests.serving import store_entry
from tests.storefront import Storefront

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
OPT_IN = ["EVENT_CONTENT_VIEW", "EVENT_SEARCH", "EVENT_ADD_TO_CART", "EVENT_INITIATED_CHECKOUT",
          "EVENT_ADD_PAYMENT_INFO", "EVENT_PLACE_ORDER", "EVENT_PURCHASE", "EVENT_CONTACT", "EVENT_SUBSCRIBE"]
TRIGGERS = ["EVENT_CONTACT a.wa", "EVENT_SUBSCRIBE form.newsletter", "EVENT_CONTACT url:/pages/contact*"]


@pytest.fixture
def shops(tmp_path) -> Iterator[Callable[..., tuple[Storefront, BridgeSite]]]:
    """Open a storefront of `platform` and the bridge with a store for it (extra fields as given)."""
    opened: list[Any] = []

    def open_shop(platform: str, **fields: Any) -> tuple[Storefront, BridgeSite]:
        shop = Storefront(endpoint="", platform=platform)
        opened.append(shop)
        site = BridgeSite(tmp_path / platform, [store_entry(platform, "acme", storefront_domains=[shop.url], **fields)])
        opened.append(site)
        settings = site.app.test_client().get("/snippet/acme.js", headers={"Host": "127.0.0.1"}).get_data(as_text=True)
        shop.settings.update(_settings(settings), **site.settings("acme"))
        return shop, site

    yield open_shop
    for thing in reversed(opened):
        thing.close()


def _settings(script: str) -> dict[str, Any]:
    import json

    line = script.partition("\n")[0]
    return {k: v for k, v in json.loads(line[len("window.KWAI_BRIDGE = "):-1]).items() if k in ("events", "triggers", "consentMode")}


def delivered(site: BridgeSite, kwai) -> list[tuple[str, str, dict]]:
    """(event, click id, properties with the value and currency) of what Kwai accepted."""
    site.deliver(kwai.base_url)
    found = [(r.fields["event_name"], r.fields["clickid"],
              {**r.properties, **({"value": Decimal(r.fields["value"]), "currency": r.fields["currency"]}
                                  if r.fields.get("value") is not None else {})})
             for r in kwai.successes()]
    return sorted(found, key=lambda item: item[:2])


def test_shopify_product_view_cart_add_and_search_reach_kwai_once_each(page, shops, kwai):
    shop, site = shops("shopify")
    shop.empty_cart()
    visit(page, shop.url + "/products/ipod-nano?click_id=Shp%2B1%3D%3D")
    visit(page, shop.url + "/products/ipod-nano")  # a reload: the same view
    page.click("#add-to-cart")
    page.evaluate("window.addedToCart")
    page.wait_for_function("window.kwaiBridge && (window.kwaiBridge.settled(), true)")
    page.wait_for_timeout(400)  # the cart watch answers 200 ms after the theme's add
    page.evaluate("window.kwaiBridge.settled()")
    visit(page, shop.url + "/search?q=pink+ipod")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "storefront-shopify-search.png"))
    names = [r.event_name for r in site.events("acme")]
    assert sorted(names) == ["EVENT_ADD_TO_CART", "EVENT_CONTENT_VIEW", "EVENT_SEARCH"], names
    got = delivered(site, kwai)
    assert [(name, click) for name, click, _ in got] == [
        ("EVENT_ADD_TO_CART", "Shp+1=="), ("EVENT_CONTENT_VIEW", "Shp+1=="), ("EVENT_SEARCH", "Shp+1==")]
    add, view, search = (props for _, _, props in got)
    assert (view["content_id"], view["content_name"], view["content_category"], view["value"], view["currency"]) == (
        "632910392", "IPod Nano - 8GB - Pink", "Cult Products", 199, "USD")
    assert (add["content_id"], add["quantity"], add["value"]) == ("632910392", 1, 199)
    assert search["query"] == "pink ipod"
    add_row = next(r for r in site.events("acme") if r.event_name == "EVENT_ADD_TO_CART")
    assert add_row.business_key.startswith("cart:Z2NwLXVzLWVhc3Qx") and add_row.business_key.endswith(":1")


@pytest.mark.parametrize("button", ["#ajax-add", "#block-add"], ids=["classic-ajax", "block"])
def test_woocommerce_archive_and_block_add_to_cart(page, shops, kwai, button):
    shop, site = shops("woocommerce")
    visit(page, shop.url + "/shop/?click_id=Woo1")
    page.click(button)
    page.evaluate("window.added")
    page.wait_for_timeout(300)  # resource timing reports the add a moment later
    page.evaluate("window.kwaiBridge.settled()")
    got = delivered(site, kwai)
    assert [(n, c) for n, c, _ in got] == [("EVENT_ADD_TO_CART", "Woo1")]
    assert got[0][2]["content_id"] == ("43" if button == "#ajax-add" else "44")


def test_woocommerce_product_form_view_and_classic_checkout(page, shops, kwai):
    shop, site = shops("woocommerce")
    visit(page, shop.url + "/product/hoodie/?click_id=Woo2")
    page.click("button[name=add-to-cart]")
    page.wait_for_url("**/cart-added/")
    visit(page, shop.url + "/checkout/")
    page.fill("#billing_email", "shopper@example.com")
    page.click("#place_order")
    page.wait_for_url("**/checkout/done")
    visit(page, shop.url + "/?s=blue+hoodie")
    got = delivered(site, kwai)
    assert [(n, c) for n, c, _ in got] == [
        ("EVENT_ADD_PAYMENT_INFO", "Woo2"), ("EVENT_ADD_TO_CART", "Woo2"), ("EVENT_CONTENT_VIEW", "Woo2"),
        ("EVENT_INITIATED_CHECKOUT", "Woo2"), ("EVENT_SEARCH", "Woo2")]
    props = {n: p for n, _, p in got}
    assert (props["EVENT_CONTENT_VIEW"]["content_id"], props["EVENT_CONTENT_VIEW"]["value"],
            props["EVENT_CONTENT_VIEW"]["currency"], props["EVENT_CONTENT_VIEW"]["content_category"]) == (
        "42", 45, "BRL", "Clothing")
    assert (props["EVENT_ADD_TO_CART"]["quantity"], props["EVENT_ADD_TO_CART"]["value"]) == (2, 90)
    assert props["EVENT_SEARCH"]["query"] == "blue hoodie"


def test_woocommerce_block_checkout_reports_checkout_and_payment(page, shops, kwai):
    shop, site = shops("woocommerce")
    visit(page, shop.url + "/checkout-block/?click_id=Woo3")
    page.fill("#email", "shopper@example.com")
    page.click(".wc-block-components-checkout-place-order-button")
    page.click(".wc-block-components-checkout-place-order-button")  # a second press is the same step
    page.evaluate("window.kwaiBridge.settled()")
    assert [(n, c) for n, c, _ in delivered(site, kwai)] == [
        ("EVENT_ADD_PAYMENT_INFO", "Woo3"), ("EVENT_INITIATED_CHECKOUT", "Woo3")]


def test_without_a_click_nothing_is_sent_nor_stored(page, shops, kwai):
    shop, site = shops("shopify")
    visit(page, shop.url + "/products/ipod-nano")
    visit(page, shop.url + "/search?q=ipod")
    assert site.events("acme") == []


def test_with_consent_refused_nothing_is_sent(page, shops, kwai):
    shop, site = shops("woocommerce", consent_mode=True)
    page.add_init_script("window.wp_has_consent = function () { return false; };")
    visit(page, shop.url + "/product/hoodie/?click_id=NoConsent1")
    visit(page, shop.url + "/?s=hoodie")
    assert site.events("acme") == []
    page.add_init_script("window.wp_has_consent = function () { return true; };")
    visit(page, shop.url + "/product/hoodie/?click_id=Consent1")
    assert [r.event_name for r in site.events("acme")] == ["EVENT_CONTENT_VIEW"]


def test_the_stores_triggers_report_contact_and_subscribe(page, shops, kwai):
    shop, site = shops("shopify", events=OPT_IN, event_triggers=TRIGGERS)
    visit(page, shop.url + "/pages/contact?click_id=Opt1")  # the URL pattern: a contact
    page.click("#whatsapp")
    page.click("#newsletter button")
    page.evaluate("window.kwaiBridge.settled()")
    assert [(n, c) for n, c, _ in delivered(site, kwai)] == [
        ("EVENT_CONTACT", "Opt1"), ("EVENT_CONTACT", "Opt1"), ("EVENT_SUBSCRIBE", "Opt1")]


def test_an_event_the_store_does_not_list_is_not_even_posted(page, shops, kwai):
    shop, site = shops("shopify", events=["EVENT_PURCHASE"])
    visit(page, shop.url + "/products/ipod-nano?click_id=Off1")
    assert site.events("acme") == [] and shop.settings["events"] == []


def test_shopify_checkout_pixel_reports_checkout_started_and_payment_info(page, shops, kwai):
    shop, site = shops("shopify")
    visit(page, shop.url + "/?click_id=Pix%2B1")
    page.goto(shop.url + "/pixel-test")
    checkout = {"data": {"checkout": {"token": "chk-77", "currencyCode": "BRL",
                                      "totalPrice": {"amount": 120.5, "currencyCode": "BRL"}}}}
    page.wait_for_function("document.getElementById('sandbox').contentWindow !== null")
    page.wait_for_timeout(200)  # the sandbox's scripts load
    for name in ("checkout_started", "checkout_started", "payment_info_submitted"):
        page.evaluate("([name, event]) => firePixelEvent(name, event)", [name, checkout])
    page.wait_for_timeout(300)  # no-cors posts are not awaited by the pixel
    got = delivered(site, kwai)
    assert [(n, c) for n, c, _ in got] == [("EVENT_ADD_PAYMENT_INFO", "Pix+1"), ("EVENT_INITIATED_CHECKOUT", "Pix+1")]
    assert all((p["value"], p["currency"]) == (120.5, "BRL") for _, _, p in got)
    assert {r.business_key for r in site.events("acme")} == {"checkout:chk-77:EVENT_INITIATED_CHECKOUT",
                                                             "checkout:chk-77:EVENT_ADD_PAYMENT_INFO"}


def test_shopline_ajax_cart_add_reaches_kwai_with_the_cart_token(page, shops, kwai):
    shop, site = shops("shopline")
    shop.empty_cart()
    visit(page, shop.url + "/products/x?click_id=Sl1")
    page.click("#add-to-cart")
    page.evaluate("window.addedToCart")
    page.wait_for_timeout(400)  # the cart watch answers 200 ms after the theme's add
    page.evaluate("window.kwaiBridge.settled()")
    assert [(n, c) for n, c, _ in delivered(site, kwai)] == [("EVENT_ADD_TO_CART", "Sl1")]
    [row] = site.events("acme")
    assert row.business_key.startswith("cart:Z2NwLXVzLWVhc3Qx") and row.event.content_id == "632910392"
