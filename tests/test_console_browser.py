"""The console in headless Chromium over loopback: log in, the overview with held stores
first, a store's page (copy the webhook URL, send a test event to the fake Kwai), replay
a dead event and see it sent, add a store after a validation error, a merchant's view,
and CSRF. Every page is opened with no console error (the `page` fixture), and each test
saves a screenshot in its temporary folder."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.browser import browser_page  # noqa: F401 (fixture)
from tests.console_site import ADMIN, MERCHANT, PASSWORD, Site, open_site
from tests.fake_kwai import FakeKwai
from tests.fake_platforms import WC_KEY, WC_SECRET, FakeWooCommerce

pytestmark = pytest.mark.browser
#: What Chromium logs when a page itself answers 4xx on purpose (a wrong password, a form
#: with errors, another store's page): about the document, not an error of the page.
DOCUMENT_STATUS = re.compile(r"^console\.error: Failed to load resource: the server responded with a status of "
                             r"(400|401|403|404) ")


@pytest.fixture
def page(browser_page: Any) -> Iterator[Any]:
    """The browser page; any console message or uncaught error fails the test, and so does
    any asset (script, style, image) that does not load."""
    noise: list[str] = []
    browser_page.on("console", lambda message: noise.append(f"console.{message.type}: {message.text}"))
    browser_page.on("pageerror", lambda error: noise.append(f"uncaught: {error}"))
    browser_page.on("response", lambda r: noise.append(f"{r.status} {r.url}")
                    if r.status >= 400 and r.request.resource_type != "document" else None)
    yield browser_page
    assert [n for n in noise if not DOCUMENT_STATUS.match(n)] == []


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Iterator[Site]:
    with FakeKwai(accepted_tokens={"token-woocommerce", "token-shopline"}) as kwai:
        opened = open_site(tmp_path, sqlite_url, kwai_url=kwai.base_url)
        opened.kwai = kwai
        yield opened
        opened.close()


def log_in(page: Any, site: Site, email: str = ADMIN) -> None:
    page.goto(site.url + "/console/")
    assert "/console/login" in page.url
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url + "/console/")


def shot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def test_log_in_and_see_held_stores_first(page: Any, site: Site, tmp_path: Path):
    page.goto(site.url + "/console/login")
    page.get_by_label("E-mail").fill(ADMIN)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "wrong e-mail address or password"
    log_in(page, site)
    cookie = next(c for c in page.context.cookies() if c["name"] == "kwb_console")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Lax", False)
    rows = page.locator("table.stores tbody tr")
    assert [rows.nth(i).locator("th a").inner_text() for i in range(3)] == ["acme", "globex", "aaa-calm"]
    assert "held: token refused" in rows.nth(0).inner_text()
    assert "no webhook received yet" in rows.nth(2).inner_text()
    assert "held" in page.locator("#service-status").inner_text()
    shot(page, tmp_path, "overview")
    page.get_by_label("Platform").select_option("woocommerce")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("table.stores tbody th a").all_inner_texts() == ["globex"]
    page.get_by_role("button", name=re.compile("Log out")).click()
    page.goto(site.url + "/console/")
    assert "/console/login" in page.url


def test_open_a_store_copy_its_webhook_url_and_send_a_test_event(page: Any, site: Site, tmp_path: Path):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    log_in(page, site)
    page.get_by_role("link", name="globex").click()
    expected = site.url + "/webhooks/woocommerce/globex"
    assert page.locator("#copy-webhook-url").inner_text() == expected
    page.get_by_role("button", name="Copy webhook url").click()
    copied = page.locator("button[data-copy=copy-webhook-url][data-copied]")
    copied.wait_for()
    assert copied.get_attribute("data-copied") == expected
    assert page.evaluate("navigator.clipboard.readText()") == expected
    assert "order.created" in page.locator("#copy-topics").inner_text()
    page.get_by_label("Test click id").fill("test-click-1")
    page.get_by_label("Event name").select_option("EVENT_PURCHASE")
    page.get_by_role("button", name="Send test event").click()
    assert "Kwai accepted the test event" in page.locator("#test-answer").inner_text()
    assert [r.fields["event_name"] for r in site.kwai.received] == ["EVENT_PURCHASE"]
    shot(page, tmp_path, "store")
    page.goto(site.url + "/console/stores/acme")
    page.get_by_label("Test click id").fill("test-click-2")
    page.get_by_role("button", name="Send test event").click()
    answer = page.locator("#test-answer").inner_text()
    assert "10006" in answer and "pixel-shopify" in answer and "token-shopify" not in page.content()


def test_open_a_dead_event_replay_it_and_see_it_sent(page: Any, site: Site, tmp_path: Path):
    dead = site.world.event_ids["globex"][0]
    log_in(page, site)
    # the store's held events first: while it has any, the dispatcher holds its new ones too
    page.goto(site.url + "/console/stores/globex")
    page.get_by_role("button", name="Replay held events").click()
    assert "1 event put back" in page.locator("#waiting").inner_text()
    page.goto(site.url + "/console/stores/globex/events?status=dead")
    page.get_by_role("link", name=f"#{dead}").click()
    assert page.locator("#event-status").inner_text() == "dead"
    assert "…" in page.locator("pre.code").first.inner_text()  # the token masked
    page.get_by_role("button", name="Replay").click()
    assert page.locator("#event-status").inner_text() == "pending"
    assert site.dispatch() == {"sent": 2}
    page.reload()
    assert page.locator("#event-status").inner_text() == "sent"
    shot(page, tmp_path, "event")


def test_add_a_store_through_the_form_after_a_validation_error(page: Any, site: Site, tmp_path: Path):
    log_in(page, site)
    page.get_by_role("link", name="Add a store").click()
    page.get_by_label("Store id (required)", exact=True).fill("newco")
    page.get_by_label("Platform (required)", exact=True).select_option("shopline")
    page.get_by_label("Shop address (required)", exact=True).fill("newco.myshopline.com")
    page.get_by_label("Webhook secrets (required)", exact=True).fill("newco-webhook-secret-0001")
    page.get_by_label("Kwai pixel id (required)", exact=True).fill("pixel-newco")
    page.get_by_label("Kwai access token (required)", exact=True).fill("newco-access-token-9876")
    page.get_by_label("Quiet after (hours)", exact=True).fill("0")
    page.get_by_role("button", name="Add the store").click()
    assert page.locator("#e-quiet_hours").inner_text() == "Quiet after (hours): must be a whole number from 1 to 720"
    assert page.locator("#h-quiet_hours").inner_text().startswith("quiet_hours")  # the name the stores file uses
    shot(page, tmp_path, "form-error")
    page.get_by_label("Quiet after (hours)", exact=True).fill("6")
    page.get_by_label("Webhook secrets (required)", exact=True).fill("newco-webhook-secret-0001")
    page.get_by_label("Kwai access token (required)", exact=True).fill("newco-access-token-9876")
    page.get_by_label("Alert webhook URL", exact=True).fill("https://hooks.example.com/services/T0/B0/newco-alerts")
    page.get_by_role("button", name="Add the store").click()
    page.wait_for_url(re.compile(r"/console/stores/newco\?created=1"))
    assert page.locator("#copy-webhook-url").inner_text() == site.url + "/webhooks/shopline/newco"
    config = site.runtime.catalog.get("newco").config
    assert config.quiet_hours == 6
    assert config.alert_webhook_url == "https://hooks.example.com/services/T0/B0/newco-alerts"
    shot(page, tmp_path, "created")

    # The alert URL is a secret: the edit form shows its hint, keeps it when left empty,
    # and removes it only when asked.
    page.get_by_role("link", name="Edit").click()
    assert "…erts" in page.locator("fieldset", has_text="Alert webhook URL").inner_text()
    assert "newco-alerts" not in page.content()
    page.get_by_role("button", name="Save").click()
    assert site.runtime.catalog.get("newco").config.alert_webhook_url.endswith("newco-alerts")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Remove the alert webhook url", exact=True).check()
    page.get_by_role("button", name="Save").click()
    assert site.runtime.catalog.get("newco").config.alert_webhook_url == ""
    assert site.runtime.catalog.get("newco").config.access_token == "newco-access-token-9876"


def test_a_merchant_sees_only_their_store(page: Any, site: Site, tmp_path: Path):
    log_in(page, site, MERCHANT)
    assert page.locator("table.stores tbody th a").all_inner_texts() == ["acme"]
    assert page.get_by_role("link", name="Add a store").count() == 0
    response = page.goto(site.url + "/console/stores/globex")
    assert response.status == 404
    assert page.goto(site.url + "/console/stores/globex/events").status == 404
    assert page.goto(site.url + f"/console/events/{site.world.event_ids['globex'][0]}").status == 404
    assert page.goto(site.url + "/console/stores/new").status == 403
    shot(page, tmp_path, "merchant")


def test_a_form_post_without_the_csrf_token_is_refused(page: Any, site: Site, tmp_path: Path):
    log_in(page, site)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    dead = site.world.event_ids["acme"][0]
    refused = requests.post(f"{site.url}/console/events/{dead}/replay", cookies=cookies, allow_redirects=False,
                            timeout=30)
    assert refused.status_code == 403
    forged = requests.post(f"{site.url}/console/events/{dead}/replay", cookies=cookies, allow_redirects=False,
                           data={"csrf_token": "forged"}, timeout=30)
    assert forged.status_code == 403
    assert {e.id: e.status for e in site.runtime.outbox.list_events(store_id="acme")}[dead] == "dead"
    assert requests.post(f"{site.url}/console/login", data={"email": ADMIN, "password": PASSWORD},
                         timeout=30, allow_redirects=False).status_code == 403
    page.goto(site.url + f"/console/events/{dead}")
    shot(page, tmp_path, "csrf")


def test_connect_a_store_from_its_page(page: Any, site: Site, tmp_path: Path):
    with FakeWooCommerce() as fake:
        record = site.runtime.catalog.get("globex")
        site.runtime.catalog.replace(replace(record.config, admin_api_url=fake.base, consumer_key=WC_KEY,
                                             consumer_secret=WC_SECRET), actor="test", now=record.updated_at)
        site.runtime.registry.refresh(wait=True)
        site.runtime.settings = replace(site.runtime.settings, public_url=site.url)
        log_in(page, site)
        page.goto(site.url + "/console/stores/globex")
        assert page.locator("#link-status").inner_text() == "not connected"
        page.get_by_role("button", name="Connect webhooks").click()
        answer = page.locator("#connect-answer").inner_text()
        assert "created" in answer and "order.created" in answer
        assert page.locator("#link-status").inner_text() == "connected"
        assert sorted(fake.topics()) == ["customer.created", "order.created", "order.updated"]
        shot(page, tmp_path, "connect")
        page.get_by_role("button", name="Connect webhooks").click()
        assert "ok: " in page.locator("#connect-answer").inner_text().replace("ok\n", "ok: ")
        assert WC_SECRET not in page.content()
