"""WooCommerce's REST API v3: webhooks and orders, with the store's consumer key pair.

https://woocommerce.github.io/woocommerce-rest-api-docs/#webhooks,
https://woocommerce.github.io/woocommerce-rest-api-docs/#list-all-orders: pages are
numbered and `X-WP-TotalPages` says how many; a webhook is `active`, `paused` (by an
admin) or `disabled` (by WooCommerce, after failed deliveries), and takes its own
`secret`, which signs its deliveries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator, Mapping

from kwai_bridge.platforms.base import OrdersPage, Reply, Subscription, Transport, iso, page_of, refusal

NAME = "woocommerce"
API_PATH = "/wp-json/wc/v3"
#: The most a page holds (WooCommerce's `per_page` allows 100).
PAGE_SIZE = 100
#: The name the bridge gives its webhooks, so that `disconnect` removes only its own.
WEBHOOK_NAME = "kwai-bridge"


def default_base(shop: str) -> str:
    return shop.rstrip("/") + API_PATH


# -- answers, read (pure) ------------------------------------------------------------
def subscription(item: Mapping[str, Any]) -> Subscription:
    status = str(item.get("status") or "")
    return Subscription(id=str(item.get("id")), topic=str(item.get("topic") or ""),
                        address=str(item.get("delivery_url") or ""), active=status == "active", status=status)


def total_pages(reply: Reply) -> int:
    try:
        return max(1, int(reply.headers.get("x-wp-totalpages", "1")))
    except ValueError:
        return 1


def orders_page(reply: Reply) -> OrdersPage:
    return page_of(reply.json(), updated="date_modified_gmt")


# -- the client --------------------------------------------------------------------
@dataclass
class WooCommerceClient:
    base: str
    consumer_key: str
    consumer_secret: str
    transport: Transport
    page_size: int = PAGE_SIZE
    pinned_version: str = ""

    def _call(self, method: str, path: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Reply:
        # Basic authentication over HTTPS, as the REST API documents it for HTTPS sites.
        reply = self.transport.request(method, self.base + path, headers={}, body=body, params=params,
                                       auth=(self.consumer_key, self.consumer_secret))
        error = refusal(reply)
        if error is not None:
            raise error
        return reply

    def subscriptions(self) -> list[Subscription]:
        found, page = [], 1
        while True:
            reply = self._call("GET", "/webhooks", params={"per_page": 100, "page": page})
            items = reply.json() or []
            found += [subscription(i) for i in items if isinstance(i, dict)]
            if page >= total_pages(reply):
                return found
            page += 1

    def create(self, topic: str, address: str, *, secret: str) -> Subscription:
        reply = self._call("POST", "/webhooks", body={"name": f"{WEBHOOK_NAME} {topic}", "topic": topic,
                                                        "delivery_url": address, "secret": secret, "status": "active"})
        return subscription(reply.json() or {})

    def repair(self, sub: Subscription, topic: str, address: str, *, secret: str) -> Subscription:
        reply = self._call("PUT", f"/webhooks/{sub.id}", body={"topic": topic, "delivery_url": address,
                                                                 "secret": secret, "status": "active"})
        return subscription(reply.json() or {})

    def delete(self, sub: Subscription) -> None:
        self._call("DELETE", f"/webhooks/{sub.id}", params={"force": "true"})

    def orders(self, *, since: datetime) -> Iterator[OrdersPage]:
        page = 1
        while True:
            # Oldest change first, so that each page's last time is a checkpoint.
            reply = self._call("GET", "/orders", params={
                "modified_after": iso(since - timedelta(seconds=1)).removesuffix("Z"), "dates_are_gmt": "true",
                "orderby": "modified", "order": "asc", "per_page": self.page_size, "page": page})
            yield orders_page(reply)
            if page >= total_pages(reply):
                return
            page += 1


__all__ = ["NAME", "WEBHOOK_NAME", "WooCommerceClient", "default_base", "orders_page", "subscription", "total_pages"]
