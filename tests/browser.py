"""Headless Chromium for the storefront tests, driven by Playwright's sync API.

The browser is the Debian `chromium` package (KWAI_BRIDGE_TEST_CHROMIUM overrides the
path), launched once per session on first use. When it is missing the tests skip with
the reason locally and fail under CI=true. Use it with:

    from tests.browser import browser_page  # noqa: F401
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = os.environ.get("KWAI_BRIDGE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
IN_CI = os.environ.get("CI", "").lower() == "true"
#: Playwright's wait for a selector, navigation or event, in milliseconds.
TIMEOUT_MS = 5000

_launched: dict[str, Any] = {}


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _browser(config: pytest.Config) -> Any:
    """The session's Chromium, launched on first use and closed when pytest ends."""
    if "browser" in _launched:
        return _launched["browser"]
    if "problem" in _launched:
        _unavailable(_launched["problem"])
    if not Path(CHROMIUM).is_file() or not os.access(CHROMIUM, os.X_OK):
        _launched["problem"] = f"no Chromium executable at {CHROMIUM} (apt-get install chromium)"
        _unavailable(_launched["problem"])
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _launched["problem"] = f"playwright is not installed: {exc}"
        _unavailable(_launched["problem"])
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
    except Exception as exc:  # a broken install must read as such, not as a test failure
        playwright.stop()
        _launched["problem"] = f"Chromium at {CHROMIUM} did not start: {exc.__class__.__name__}: {exc}"
        _unavailable(_launched["problem"])

    def close() -> None:
        browser.close()
        playwright.stop()
        _launched.pop("browser", None)

    config.add_cleanup(close)
    _launched["browser"] = browser
    return browser


@pytest.fixture
def browser_page(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies and localStorage)."""
    context = _browser(request.config).new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser_page: Any) -> Iterator[Any]:
    """The browser page; a console message, a refused CORS request or an uncaught script
    error shows up as noise and fails the test."""
    noise: list[str] = []
    browser_page.on("console", lambda message: noise.append(f"console.{message.type}: {message.text}"))
    browser_page.on("pageerror", lambda error: noise.append(f"uncaught: {error}"))
    yield browser_page
    assert noise == []


def visit(page: Any, url: str) -> None:
    """Load `url` and wait until the snippet's requests on that page have finished."""
    page.goto(url)
    page.evaluate("window.kwaiBridge && window.kwaiBridge.settled()")
