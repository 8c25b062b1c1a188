"""Shopify's GraphQL Admin API (its REST Admin API is legacy): webhook subscriptions and
orders, with the store's custom-app access token (`X-Shopify-Access-Token`).

Rate limits are by query cost (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits):
every answer tells `extensions.cost.throttleStatus` (bucket size, what is left, restore
rate per second); a query that asks for more than is left is answered `THROTTLED`. The
client waits until the bucket holds what the next query asked last time, and after a
throttled answer as long as the restore rate says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Mapping

from kwai_bridge.platforms.base import (
    MAX_THROTTLED, CredentialsRefused, OrdersPage, PlatformError, Refused, Subscription, Transport, Unavailable,
    iso, parse_time, refusal,
)
from kwai_bridge.platforms.shopify_orders import ORDER_FIELDS, webhook_order

NAME = "shopify"
API_VERSION = "2025-07"
#: Orders a page: with their line items, 50 keeps a query's cost well under the 1,000 limit.
PAGE_SIZE = 50

SUBSCRIPTIONS = """query($after: String) { webhookSubscriptions(first: 100, after: $after) {
  nodes { id topic apiVersion { handle } endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
  pageInfo { hasNextPage endCursor } } }"""
CREATE = """mutation($topic: WebhookSubscriptionTopic!, $url: URL!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {callbackUrl: $url, format: JSON}) {
    webhookSubscription { id topic apiVersion { handle } endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } }
    userErrors { field message } } }"""
DELETE = """mutation($id: ID!) { webhookSubscriptionDelete(id: $id) {
  deletedWebhookSubscriptionId userErrors { field message } } }"""
ORDERS = """query($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {
    nodes { %s } pageInfo { hasNextPage endCursor } } }""" % ORDER_FIELDS


def default_base(shop: str) -> str:
    return f"https://{shop}/admin/api/{API_VERSION}"


def graphql_topic(topic: str) -> str:
    """`orders/create` -> `ORDERS_CREATE`."""
    return topic.replace("/", "_").upper()


def webhook_topic(topic: str) -> str:
    """`ORDERS_CREATE` -> `orders/create` (every topic the bridge uses has one slash)."""
    return topic.lower().replace("_", "/", 1)


# -- answers, read (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """The bucket after an answer, and what the query asked."""

    requested: float = 0.0
    available: float = 0.0
    maximum: float = 0.0
    restore_rate: float = 0.0

    def wait_for(self, cost: float) -> float:
        """Seconds until the bucket holds `cost` (0 when it does, or when unknown)."""
        if self.restore_rate <= 0 or self.available >= cost:
            return 0.0
        return (min(cost, self.maximum or cost) - self.available) / self.restore_rate


def cost_of(found: Mapping[str, Any]) -> Cost:
    cost = (found.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}

    def number(value: Any) -> float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
    return Cost(number(cost.get("requestedQueryCost")), number(status.get("currentlyAvailable")),
                number(status.get("maximumAvailable")), number(status.get("restoreRate")))


def throttled(found: Mapping[str, Any]) -> bool:
    return any(isinstance(e, Mapping) and ((e.get("extensions") or {}).get("code") == "THROTTLED"
                                           or e.get("message") == "Throttled")
               for e in found.get("errors") or [])


def data_of(found: Any, name: str) -> Mapping[str, Any]:
    """`data.<name>`, or the GraphQL errors (or user errors) as an error."""
    if not isinstance(found, Mapping):
        raise PlatformError("the answer is not a GraphQL result")
    errors = found.get("errors")
    if errors:
        message = "; ".join(str(e.get("message") if isinstance(e, Mapping) else e) for e in errors)[:300]
        codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, Mapping)}
        if codes & {"ACCESS_DENIED", "UNAUTHORIZED"}:
            raise CredentialsRefused(message)
        raise Refused(message)
    result = (found.get("data") or {}).get(name)
    if not isinstance(result, Mapping):
        raise PlatformError(f"the answer has no {name}")
    user_errors = result.get("userErrors") or []
    if user_errors:
        raise Refused("; ".join(str(e.get("message")) for e in user_errors if isinstance(e, Mapping))[:300])
    return result


def subscription(node: Mapping[str, Any]) -> Subscription:
    endpoint = node.get("endpoint") or {}
    version = (node.get("apiVersion") or {}).get("handle") or ""
    return Subscription(id=str(node.get("id")), topic=webhook_topic(str(node.get("topic") or "")),
                        address=str(endpoint.get("callbackUrl") or ""), version=version)


def orders_page(result: Mapping[str, Any]) -> tuple[OrdersPage, str | None]:
    orders = tuple(webhook_order(n) for n in result.get("nodes") or [] if isinstance(n, Mapping))
    times = [t for t in (parse_time(o.get("updated_at")) for o in orders) if t]
    info = result.get("pageInfo") or {}
    return OrdersPage(orders, max(times, default=None)), info.get("endCursor") if info.get("hasNextPage") else None


# -- the client --------------------------------------------------------------------
@dataclass
class ShopifyClient:
    base: str
    token: str
    transport: Transport
    page_size: int = PAGE_SIZE
    #: The bucket as the last answer left it.
    cost: Cost = field(default_factory=Cost)
    #: A subscription's API version is the app's setting, not the subscription's: not compared.
    pinned_version: str = ""

    def query(self, text: str, variables: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        """Run one query or mutation; wait for the bucket first, and again when throttled."""
        for _ in range(MAX_THROTTLED):
            self.transport.wait(self.cost.wait_for(self.cost.requested))
            reply = self.transport.request("POST", f"{self.base}/graphql.json", body={
                "query": text, "variables": dict(variables)}, headers={"X-Shopify-Access-Token": self.token})
            error = refusal(reply)
            if error is not None:
                raise error
            found = reply.json()
            if not isinstance(found, Mapping):
                raise PlatformError("the answer is not JSON")
            self.cost = cost_of(found)
            if throttled(found):
                # What the query asked must be back in the bucket before it is asked again.
                self.transport.wait(max(self.cost.wait_for(self.cost.requested), 0.05))
                continue
            return data_of(found, name)
        raise Unavailable(f"still throttled after {MAX_THROTTLED} waits")

    def subscriptions(self) -> list[Subscription]:
        found, after = [], None
        while True:
            result = self.query(SUBSCRIPTIONS, {"after": after}, "webhookSubscriptions")
            found += [subscription(n) for n in result.get("nodes") or [] if isinstance(n, Mapping)]
            info = result.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return found
            after = info.get("endCursor")

    def create(self, topic: str, address: str, *, secret: str) -> Subscription:
        # `secret` is not sent: Shopify signs with the app's secret, which the store holds.
        result = self.query(CREATE, {"topic": graphql_topic(topic), "url": address}, "webhookSubscriptionCreate")
        return subscription(result.get("webhookSubscription") or {})

    def repair(self, sub: Subscription, topic: str, address: str, *, secret: str) -> Subscription:
        # Replaced rather than updated: the new one is made before the old one goes.
        created = self.create(topic, address, secret=secret)
        self.delete(sub)
        return created

    def delete(self, sub: Subscription) -> None:
        self.query(DELETE, {"id": sub.id}, "webhookSubscriptionDelete")

    def orders(self, *, since: datetime) -> Iterator[OrdersPage]:
        after = None
        while True:
            result = self.query(ORDERS, {"first": self.page_size, "after": after,
                                         "query": f"updated_at:>='{iso(since)}'"}, "orders")
            page, after = orders_page(result)
            yield page
            if after is None:
                return


__all__ = ["API_VERSION", "NAME", "Cost", "ShopifyClient", "cost_of", "data_of", "default_base", "graphql_topic",
           "orders_page", "subscription", "throttled", "webhook_topic"]
