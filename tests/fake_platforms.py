"""Fake Admin APIs of the three platforms on loopback, written from their documentation:

- Shopify's GraphQL Admin API (https://shopify.dev/docs/api/admin-graphql): `orders`
  (cursor pages, sorted by update, `updated_at:>=` search), `webhookSubscriptions`,
  `webhookSubscriptionCreate`/`Delete`; the query-cost bucket in `extensions.cost`, and
  `THROTTLED` when a query asks for more than is left; 401 for a wrong token.
- SHOPLINE's Open API (developer.shopline.com): `GET /orders.json` (`updated_at_min`,
  `Link: <...page_info=...>; rel="next"`), `/webhooks.json` (address, topic, api_version);
  Bearer token; 429 with Retry-After.
- WooCommerce's REST API v3: `GET /orders` (`modified_after`, page numbers with
  `X-WP-Total` and `X-WP-TotalPages`), `/webhooks` with status active/paused/disabled and
  a secret; Basic authentication; 429 with Retry-After.

Orders are kept in the shape of the platform's webhook (the samples in tests/fixtures/);
the Shopify fake answers them as GraphQL nodes. Every fake counts its requests, its
throttled answers, and the requests that came back before the wait it asked for
(`too_early`). Run `python -m tests.fake_platforms` to serve all three on their own.
"""
from __future__ import annotations

import base64
import bisect
import copy
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.conftest import fixture_bytes

TOKEN = "fake-admin-api-token-0123456789"
WC_KEY, WC_SECRET = "ck_fake_0123456789abcdef", "cs_fake_0123456789abcdef"
CONFIGURED = (TOKEN, WC_KEY, WC_SECRET, "new-token-0123456789", "cs_new_0123456789")


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


class FakePlatform:
    """What the three fakes share: orders, subscriptions, credentials, throttling."""

    name = ""

    def __init__(self, *, shop: str, page_limit: int = 250) -> None:
        self.shop = shop
        self.page_limit = page_limit
        self.orders: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.credentials_ok = True
        #: The credentials the fake accepts (a merchant who makes new ones revokes the old).
        self.token, self.key, self.secret = TOKEN, WC_KEY, WC_SECRET
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.throttled = 0
        self.too_early = 0
        self._throttle_next = 0
        self._not_before = 0.0
        self.retry_after = 0.05
        self.order_pages_served = 0
        #: Called (outside the lock) after each page of orders is answered.
        self.on_page: Callable[[int], None] | None = None
        self._next_id = 1000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = fake.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                                    raw)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- set-up ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakePlatform":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakePlatform":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def throttle_next(self, count: int, *, retry_after: float = 0.05) -> None:
        """Answer the next `count` requests throttled (another app emptied the bucket)."""
        with self.lock:
            self._throttle_next, self.retry_after = count, retry_after

    def add_order(self, order: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.orders[str(order["id"])] = order
            self._sorted = None
        return order

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- the request path --------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        now = time.monotonic()
        with self.lock:
            self.requests.append((method, path.split("?")[0]))
            if not self.authorised(headers):
                return self.refused()
            if now < self._not_before:
                self.too_early += 1
            if self._throttle_next > 0:
                self._throttle_next -= 1
                self.throttled += 1
                self._not_before = now + self.retry_after
                return self.throttled_answer()
            answer = self.route(method, urlsplit(path), raw)
        page = self.order_pages_served
        if answer[0] == 200 and getattr(self, "_served_orders", False):
            self._served_orders = False
            if self.on_page is not None:
                self.on_page(page)
        return answer

    def served_orders(self) -> None:
        self.order_pages_served += 1
        self._served_orders = True

    def throttled_answer(self) -> tuple[int, dict, Any]:
        return 429, {"Retry-After": f"{self.retry_after:g}"}, {"errors": "Exceeded rate limit"}

    def authorised(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    def refused(self) -> tuple[int, dict, Any]:
        raise NotImplementedError

    def route(self, method: str, url, raw: bytes) -> tuple[int, dict, Any]:
        raise NotImplementedError

    def changed_since(self, since: datetime, key: Callable[[dict], datetime]) -> list[dict]:
        """The orders changed at or after `since`, oldest change first (the sorted list is
        kept until an order is added: a benchmark pages through 100,000 of them)."""
        if getattr(self, "_sorted", None) is None:
            ordered = sorted(self.orders.values(), key=lambda o: (key(o), str(o["id"])))
            self._sorted = (ordered, [key(o) for o in ordered])
        ordered, times = self._sorted
        return ordered[bisect.bisect_left(times, since):]


# -- Shopify -------------------------------------------------------------------------------
def graphql_money(value: Any) -> Any:
    if not isinstance(value, dict):
        return None
    return {side: {"amount": value[key]["amount"], "currencyCode": value[key]["currency_code"]}
            for side, key in (("shopMoney", "shop_money"), ("presentmentMoney", "presentment_money")) if key in value}


def graphql_order(o: dict[str, Any]) -> dict[str, Any]:
    """A webhook-shaped Shopify order as the GraphQL Admin API answers it."""
    customer = o.get("customer")
    return {
        "id": f"gid://shopify/Order/{o['id']}", "legacyResourceId": str(o["id"]), "name": o.get("name"),
        "email": o.get("email"), "phone": o.get("phone"), "test": bool(o.get("test")),
        "createdAt": o.get("created_at"), "processedAt": o.get("processed_at"), "updatedAt": o.get("updated_at"),
        "displayFinancialStatus": (o.get("financial_status") or "pending").upper(),
        "currencyCode": o.get("currency"), "presentmentCurrencyCode": o.get("presentment_currency"),
        "totalPriceSet": graphql_money(o.get("total_price_set")),
        "subtotalPriceSet": graphql_money(o.get("subtotal_price_set")),
        "customAttributes": [{"key": a["name"], "value": a["value"]} for a in o.get("note_attributes") or []],
        "statusPageUrl": o.get("order_status_url"),
        "customer": {"id": f"gid://shopify/Customer/{customer['id']}", "legacyResourceId": str(customer["id"]),
                     "email": customer.get("email"), "phone": customer.get("phone")} if customer else None,
        "customerJourneySummary": {"lastVisit": {"landingPage": o.get("landing_site")}} if o.get("landing_site") else None,
        "lineItems": {"nodes": [{
            "title": line.get("title"), "quantity": line.get("quantity"), "sku": line.get("sku"),
            "variant": {"legacyResourceId": str(line["variant_id"])} if line.get("variant_id") else None,
            "product": {"legacyResourceId": str(line["product_id"])} if line.get("product_id") else None,
            "originalUnitPriceSet": graphql_money(line.get("price_set")),
        } for line in o.get("line_items") or []]},
    }


class FakeShopify(FakePlatform):
    name = "shopify"

    def __init__(self, *, shop: str = "acme.myshopify.com", bucket: float = 1000.0, restore_rate: float = 1000.0,
                 **kwargs: Any) -> None:
        super().__init__(shop=shop, **kwargs)
        self.bucket = self.maximum = bucket
        self.restore_rate = restore_rate
        self._filled_at = time.monotonic()

    @property
    def base(self) -> str:
        return f"{self.url}/admin/api/2025-07"

    def authorised(self, headers: dict[str, str]) -> bool:
        return self.credentials_ok and headers.get("x-shopify-access-token") == self.token

    def refused(self):
        return 401, {}, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}

    def _cost(self, requested: float, actual: float | None) -> dict[str, Any]:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
            "maximumAvailable": self.maximum, "currentlyAvailable": round(self.bucket, 2),
            "restoreRate": self.restore_rate}}}

    def throttled_answer(self):
        # another app emptied the bucket: what this query asks comes back in `retry_after`
        self.bucket, self._filled_at = 0.0, time.monotonic()
        return 200, {}, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                         "extensions": self._cost(self.retry_after * self.restore_rate, None)}

    def route(self, method, url, raw):
        if method != "POST" or not url.path.endswith("/graphql.json"):
            return 404, {}, {"errors": "Not Found"}
        request = json.loads(raw)
        query, variables = request["query"], request.get("variables") or {}
        now = time.monotonic()
        self.bucket = min(self.maximum, self.bucket + (now - self._filled_at) * self.restore_rate)
        self._filled_at = now
        requested = 2 + 3 * int(variables.get("first") or 1)
        if requested > self.bucket:
            self.throttled += 1
            self._not_before = now + (requested - self.bucket) / self.restore_rate
            return 200, {}, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                             "extensions": self._cost(requested, None)}
        data = self._data(query, variables)
        actual = 2 + 3 * len(next(iter(data.values())).get("nodes") or []) if "orders" in data else 10
        self.bucket -= actual
        return 200, {}, {"data": data, "extensions": self._cost(requested, actual)}

    def _data(self, query: str, v: dict[str, Any]) -> dict[str, Any]:
        if "webhookSubscriptionCreate" in query:
            sub_id = f"gid://shopify/WebhookSubscription/{self.new_id()}"
            topic = v["topic"]
            if any(s["topic"] == topic and s["callbackUrl"] == v["url"] for s in self.subscriptions.values()):
                return {"webhookSubscriptionCreate": {"webhookSubscription": None, "userErrors": [
                    {"field": ["webhookSubscription", "callbackUrl"], "message": "Address for this topic has already been taken"}]}}
            self.subscriptions[sub_id] = {"id": sub_id, "topic": topic, "callbackUrl": v["url"]}
            return {"webhookSubscriptionCreate": {"webhookSubscription": self._sub(self.subscriptions[sub_id]),
                                                  "userErrors": []}}
        if "webhookSubscriptionDelete" in query:
            gone = self.subscriptions.pop(v["id"], None)
            return {"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": v["id"] if gone else None,
                                                  "userErrors": [] if gone else [{"field": ["id"], "message": "Webhook subscription does not exist"}]}}
        if "webhookSubscriptions" in query:
            return {"webhookSubscriptions": {"nodes": [self._sub(s) for s in self.subscriptions.values()],
                                             "pageInfo": {"hasNextPage": False, "endCursor": None}}}
        if "orders(" in query:
            match = re.search(r"updated_at:>='([^']+)'", v.get("query") or "")
            since = parse_iso(match.group(1)) if match else datetime.min.replace(tzinfo=timezone.utc)
            found = self.changed_since(since, lambda o: parse_iso(o["updated_at"]))
            start = int(base64.b64decode(v["after"]).decode()) if v.get("after") else 0
            first = min(int(v["first"]), self.page_limit)
            page = found[start:start + first]
            more = start + first < len(found)
            self.served_orders()
            return {"orders": {"nodes": [graphql_order(o) for o in page], "pageInfo": {
                "hasNextPage": more, "endCursor": base64.b64encode(str(start + first).encode()).decode() if more else None}}}
        return {}

    @staticmethod
    def _sub(s: dict[str, Any]) -> dict[str, Any]:
        return {"id": s["id"], "topic": s["topic"], "apiVersion": {"handle": "2025-07"},
                "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": s["callbackUrl"]}}

    def topics(self) -> list[str]:
        return sorted(s["topic"].lower().replace("_", "/", 1) for s in self.subscriptions.values())


# -- REST platforms ------------------------------------------------------------------------
class _Rest(FakePlatform):
    def __init__(self, *, requests_per_second: float | None = None, burst: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.per_second, self.burst = requests_per_second, burst
        self._level, self._leaked_at = 0.0, time.monotonic()

    def route(self, method, url, raw):
        if self.per_second:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._leaked_at) * self.per_second)
            self._leaked_at = now
            if self._level + 1 > self.burst:
                self.throttled += 1
                wait = (self._level + 1 - self.burst) / self.per_second
                self._not_before = now + wait
                return 429, {"Retry-After": f"{wait:.3f}"}, {"errors": "Too many requests"}
            self._level += 1
        return self.rest(method, url, json.loads(raw) if raw else None)


class FakeShopline(_Rest):
    name = "shopline"

    def __init__(self, *, shop: str = "acme.myshopline.com", **kwargs: Any) -> None:
        super().__init__(shop=shop, **kwargs)

    @property
    def base(self) -> str:
        return f"{self.url}/admin/openapi/v20250601"

    def authorised(self, headers):
        return self.credentials_ok and headers.get("authorization") == f"Bearer {self.token}"

    def refused(self):
        return 401, {}, {"errors": "Unauthorized: the access token is invalid or has expired"}

    def rest(self, method, url, body):
        path = url.path.removeprefix("/admin/openapi/v20250601")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if path == "/webhooks.json" and method == "GET":
            return 200, {}, {"webhooks": list(self.subscriptions.values())}
        if path == "/webhooks.json" and method == "POST":
            w = body["webhook"]
            sub = {"id": self.new_id(), "address": w["address"], "topic": w["topic"], "api_version": w["api_version"]}
            self.subscriptions[str(sub["id"])] = sub
            return 200, {}, {"webhook": sub}
        match = re.fullmatch(r"/webhooks/(\d+)\.json", path)
        if match and match.group(1) in self.subscriptions:
            if method == "DELETE":
                self.subscriptions.pop(match.group(1))
                return 200, {}, {}
            self.subscriptions[match.group(1)].update(body["webhook"])
            return 200, {}, {"webhook": self.subscriptions[match.group(1)]}
        if path == "/orders.json" and method == "GET":
            if "page_info" in query:
                state = json.loads(base64.urlsafe_b64decode(query["page_info"]))
                since, start = parse_iso(state["since"]), state["start"]
            else:
                since, start = parse_iso(query.get("updated_at_min", "1970-01-01T00:00:00Z")), 0
            limit = min(int(query.get("limit", 50)), self.page_limit)
            found = self.changed_since(since, lambda o: parse_iso(o["updated_at"]))
            headers = {}
            if start + limit < len(found):
                info = base64.urlsafe_b64encode(json.dumps({"since": iso(since), "start": start + limit}).encode())
                headers["Link"] = f'<{self.base}/orders.json?{urlencode({"page_info": info.decode(), "limit": limit})}>; rel="next"'
            self.served_orders()
            return 200, headers, {"orders": found[start:start + limit]}
        return 404, {}, {"errors": "Not Found"}

    def topics(self) -> list[str]:
        return sorted(s["topic"] for s in self.subscriptions.values())


class FakeWooCommerce(_Rest):
    name = "woocommerce"

    def __init__(self, *, shop: str = "https://woo.example", **kwargs: Any) -> None:
        super().__init__(shop=shop, **kwargs)

    @property
    def base(self) -> str:
        return f"{self.url}/wp-json/wc/v3"

    def authorised(self, headers):
        expected = "Basic " + base64.b64encode(f"{self.key}:{self.secret}".encode()).decode()
        return self.credentials_ok and headers.get("authorization") == expected

    def refused(self):
        return 401, {}, {"code": "woocommerce_rest_cannot_view", "message": "Sorry, you cannot list resources.",
                         "data": {"status": 401}}

    def rest(self, method, url, body):
        path = url.path.removeprefix("/wp-json/wc/v3")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if path == "/webhooks" and method == "GET":
            return 200, {"X-WP-Total": str(len(self.subscriptions)), "X-WP-TotalPages": "1"}, \
                [{k: v for k, v in s.items() if k != "secret"} for s in self.subscriptions.values()]
        if path == "/webhooks" and method == "POST":
            sub = {"id": self.new_id(), "name": body.get("name", ""), "status": body.get("status", "active"),
                   "topic": body["topic"], "delivery_url": body["delivery_url"], "secret": body.get("secret", "")}
            self.subscriptions[str(sub["id"])] = sub
            return 201, {}, {k: v for k, v in sub.items() if k != "secret"}
        match = re.fullmatch(r"/webhooks/(\d+)", path)
        if match and match.group(1) in self.subscriptions:
            if method == "DELETE":
                return 200, {}, self.subscriptions.pop(match.group(1))
            self.subscriptions[match.group(1)].update(body)
            return 200, {}, {k: v for k, v in self.subscriptions[match.group(1)].items() if k != "secret"}
        if path == "/orders" and method == "GET":
            since = parse_iso(query.get("modified_after", "1970-01-01T00:00:00"))
            per_page = min(int(query.get("per_page", 10)), self.page_limit)
            page = int(query.get("page", 1))
            found = self.changed_since(since, lambda o: parse_iso(o["date_modified_gmt"]))
            pages = max(1, -(-len(found) // per_page))
            self.served_orders()
            return 200, {"X-WP-Total": str(len(found)), "X-WP-TotalPages": str(pages)}, \
                found[(page - 1) * per_page:page * per_page]
        return 404, {}, {"code": "rest_no_route", "message": "No route was found matching the URL and request method."}

    def topics(self) -> list[str]:
        return sorted(s["topic"] for s in self.subscriptions.values())


FAKES = {"shopify": FakeShopify, "shopline": FakeShopline, "woocommerce": FakeWooCommerce}


def api_entry(fake: FakePlatform, store_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A stores-file entry (tests/serving.store_entry) whose Admin API is `fake`."""
    from tests.serving import store_entry

    credentials = ({"consumer_key": WC_KEY, "consumer_secret": WC_SECRET} if fake.name == "woocommerce"
                   else {"admin_api_token": TOKEN})
    return store_entry(fake.name, store_id, shop=fake.shop, admin_api_url=fake.base, **credentials, **overrides)


# -- orders in the webhooks' shape ------------------------------------------------------------
_SAMPLES = {
    "shopify": "shopify/shopify_orders_create.json",
    "shopline": "shopline/shopline_orders_create.DERIVED_FROM_SDK.json",
    "woocommerce": "woocommerce/woocommerce_order_created.json",
}


def sample_order(platform: str, shop: str, *, order_id: int, updated: datetime, paid: bool = True,
                 click_id: str | None = None, test: bool = False) -> dict[str, Any]:
    """The platform's sample order payload as order `order_id`, updated at `updated`."""
    order = json.loads(fixture_bytes(_SAMPLES[platform], shop=shop if platform != "woocommerce" else None))
    order = copy.deepcopy(order)
    order["id"] = order_id if platform != "shopline" else str(order_id)
    stamp = iso(updated)
    if platform == "woocommerce":
        order.update(number=str(order_id), order_key=f"wc_order_{order_id}", status="processing" if paid else "pending",
                     date_modified_gmt=stamp.removesuffix("Z"), date_created_gmt=stamp.removesuffix("Z"),
                     date_paid_gmt=stamp.removesuffix("Z") if paid else None, date_paid=None)
        order["meta_data"] = [{"id": 1, "key": "_kwai_click_id", "value": click_id}] if click_id else []
        return order
    order.update(updated_at=stamp, created_at=stamp, processed_at=stamp, name=f"#{order_id}",
                 financial_status="paid" if paid else "pending", test=test)
    order["note_attributes"] = [{"name": "_kwai_click_id", "value": click_id}] if click_id else []
    order.pop("payment_details", None)
    order.pop("token", None)
    return order


def webhook_topic(platform: str, paid: bool) -> str:
    """The topic under which the platform sends a (paid) order's webhook."""
    if platform == "woocommerce":
        return "order.created"
    return "orders/paid" if paid else "orders/create"


def serve_all() -> None:  # pragma: no cover - `python -m tests.fake_platforms`
    now = datetime.now(timezone.utc)
    fakes = [cls().start() for cls in FAKES.values()]
    for fake in fakes:
        for i in range(20):
            fake.add_order(sample_order(fake.name, fake.shop, order_id=5000 + i, updated=now - timedelta(minutes=i),
                                        click_id=f"click-{i}"))
        print(f"{fake.name:<12} {fake.base}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # pragma: no cover
    serve_all()
