"""Signed webhooks posted without pause to running `kwai-bridge serve` processes, every
answer counted: what a busy store sends while an operator changes things."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from itertools import count

import requests

from tests.conftest import fixture_bytes
from tests.serving import SECRETS, SHOPS
from tests.signing import headers_for

_numbers = count(1)


def paid_order(store_id: str, *, click_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A new paid Shopify order (its own id and delivery id) and its signed headers."""
    order = json.loads(fixture_bytes("shopify/shopify_orders_create.json", shop=SHOPS["shopify"]))
    number = next(_numbers)
    order.update(id=9_000_000 + number, order_number=number, test=False, financial_status="paid",
                 note_attributes=[{"name": "kwai_click_id", "value": click_id or f"click-{store_id}-{number}"}])
    body = json.dumps(order).encode()
    return body, headers_for("shopify", "orders/paid", shop=SHOPS["shopify"], secret=SECRETS["shopify"], body=body,
                             delivery_id=f"{store_id}-{number}")


@dataclass(frozen=True)
class Answer:
    """One webhook posted: to which base URL, when it started (monotonic), and its HTTP
    status, or the name of the error when no answer came."""

    url: str
    started: float
    status: int | str
    click_id: str


def post_order(url: str, store_id: str) -> Answer:
    """Post one new paid order to `store_id` at `url` on a new connection, as platforms do."""
    click_id = f"click-{store_id}-{next(_numbers)}"
    body, headers = paid_order(store_id, click_id=click_id)
    started = time.monotonic()
    try:
        status: int | str = requests.post(f"{url}/webhooks/shopify/{store_id}", data=body, headers=headers,
                                          timeout=60).status_code
    except requests.RequestException as exc:
        status = type(exc).__name__
    return Answer(url, started, status, click_id)


class Traffic:
    """One thread posting orders to `store_id` at each of `urls` in turn until stopped."""

    def __init__(self, urls: list[str], store_id: str) -> None:
        self.urls = urls
        self.store_id = store_id
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for url in self.urls:
                self.answers.append(post_order(url, self.store_id))

    def wait_for(self, more: int, *, timeout: float = 60) -> None:
        """Wait until `more` answers beyond the present ones have come."""
        target = len(self.answers) + more
        deadline = time.monotonic() + timeout
        while len(self.answers) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.answers)} of {target} webhooks answered in {timeout} s")
            time.sleep(0.05)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
