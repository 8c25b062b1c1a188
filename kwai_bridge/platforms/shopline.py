"""SHOPLINE's Open API (REST): webhooks and orders, with the store's app access token.

https://developer.shopline.com/docs/admin-rest-api/webhook/subscribe-to-a-webhook:
`POST /webhooks.json` takes `{"webhook": {"address", "topic", "api_version"}}`; the
app's secret signs every delivery. Orders are listed with `updated_at_min` and paged by
the `Link` header's `rel="next"` address (cursor-based `page_info`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Mapping

from kwai_bridge.platforms.base import OrdersPage, Reply, Subscription, Transport, iso, page_of, refusal

NAME = "shopline"
#: The Open API version the bridge is written against; webhooks are subscribed with it.
API_VERSION = "v20250601"
PAGE_SIZE = 100
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def default_base(shop: str) -> str:
    return f"https://{shop}/admin/openapi/{API_VERSION}"


# -- answers, read (pure) ------------------------------------------------------------
def subscription(item: Mapping[str, Any]) -> Subscription:
    return Subscription(id=str(item.get("id")), topic=str(item.get("topic") or ""),
                        address=str(item.get("address") or ""), version=str(item.get("api_version") or ""))


def next_link(reply: Reply) -> str | None:
    """The `rel="next"` address of a `Link` header, if any."""
    match = _NEXT.search(reply.headers.get("link", ""))
    return match.group(1) if match else None


def orders_page(reply: Reply) -> OrdersPage:
    found = reply.json()
    return page_of(found.get("orders") if isinstance(found, dict) else None, updated="updated_at")


# -- the client --------------------------------------------------------------------
@dataclass
class ShoplineClient:
    base: str
    token: str
    transport: Transport
    page_size: int = PAGE_SIZE
    pinned_version: str = API_VERSION

    def _call(self, method: str, url: str, *, body: Any = None, params: Mapping[str, Any] | None = None) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json; charset=utf-8"}
        reply = self.transport.request(method, url if "://" in url else self.base + url, headers=headers,
                                       body=body, params=params)
        error = refusal(reply)
        if error is not None:
            raise error
        return reply

    def subscriptions(self) -> list[Subscription]:
        found, url = [], "/webhooks.json"
        while url:
            reply = self._call("GET", url)
            items = (reply.json() or {}).get("webhooks") or []
            found += [subscription(i) for i in items if isinstance(i, dict)]
            url = next_link(reply)
        return found

    def create(self, topic: str, address: str, *, secret: str) -> Subscription:
        # `secret` is not sent: the app's secret signs SHOPLINE's deliveries.
        reply = self._call("POST", "/webhooks.json", body={"webhook": {
            "address": address, "topic": topic, "api_version": API_VERSION}})
        return subscription((reply.json() or {}).get("webhook") or {})

    def repair(self, sub: Subscription, topic: str, address: str, *, secret: str) -> Subscription:
        reply = self._call("PUT", f"/webhooks/{sub.id}.json", body={"webhook": {
            "address": address, "api_version": API_VERSION}})
        return subscription((reply.json() or {}).get("webhook") or {})

    def delete(self, sub: Subscription) -> None:
        self._call("DELETE", f"/webhooks/{sub.id}.json")

    def orders(self, *, since: datetime) -> Iterator[OrdersPage]:
        url: str | None = "/orders.json"
        params: Mapping[str, Any] | None = {"updated_at_min": iso(since), "limit": self.page_size, "status": "any",
                                            "sort_condition": "updated_at:asc"}
        while url:
            reply = self._call("GET", url, params=params)
            yield orders_page(reply)
            url, params = next_link(reply), None  # the next address carries every parameter


__all__ = ["API_VERSION", "NAME", "ShoplineClient", "default_base", "next_link", "orders_page", "subscription"]
