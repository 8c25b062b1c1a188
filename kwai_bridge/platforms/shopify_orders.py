"""A Shopify GraphQL Admin API order, mapped once to the shape its webhook carries
(the REST resource: snake_case, numeric ids, `note_attributes`, `landing_site`), so that
the Shopify adapter converts it as it converts a webhook. Pure.

https://shopify.dev/docs/api/admin-graphql/latest/objects/Order
"""
from __future__ import annotations

from typing import Any, Mapping

#: The order fields the bridge reads: what the adapter needs, nothing of the address, and
#: nothing that needs more than the `read_orders` scope (the customer object would ask for
#: `read_customers`; the order's own email and phone identify the shopper).
ORDER_FIELDS = """
  id legacyResourceId name email phone test
  createdAt processedAt updatedAt
  displayFinancialStatus currencyCode presentmentCurrencyCode
  totalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
  subtotalPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
  customAttributes { key value }
  statusPageUrl
  customerJourneySummary { lastVisit { landingPage } firstVisit { landingPage } }
  lineItems(first: 50) { nodes {
    title quantity sku
    variant { legacyResourceId } product { legacyResourceId }
    originalUnitPriceSet { shopMoney { amount currencyCode } presentmentMoney { amount currencyCode } }
  } }
"""


def legacy_id(node: Mapping[str, Any] | None) -> int | str | None:
    """The numeric id a webhook carries: `legacyResourceId`, else the gid's tail."""
    if not isinstance(node, Mapping):
        return None
    raw = node.get("legacyResourceId") or str(node.get("id") or "").rsplit("/", 1)[-1]
    return int(raw) if isinstance(raw, str) and raw.isdigit() else (raw or None)


def money_set(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    out = {}
    for side, key in (("shopMoney", "shop_money"), ("presentmentMoney", "presentment_money")):
        money = value.get(side)
        if isinstance(money, Mapping):
            out[key] = {"amount": money.get("amount"), "currency_code": money.get("currencyCode")}
    return out or None


def _amount(value: dict[str, Any] | None) -> Any:
    return (value or {}).get("shop_money", {}).get("amount")


def _nodes(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("nodes") or [e.get("node") for e in value.get("edges") or [] if isinstance(e, Mapping)]
    return [v for v in value or [] if isinstance(v, Mapping)]


def _landing(journey: Any) -> str | None:
    if not isinstance(journey, Mapping):
        return None
    for visit in ("lastVisit", "firstVisit"):
        page = (journey.get(visit) or {}).get("landingPage") if isinstance(journey.get(visit), Mapping) else None
        if page:
            return page
    return None


def webhook_order(node: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook-shaped order for a GraphQL `Order` node."""
    total, subtotal = money_set(node.get("totalPriceSet")), money_set(node.get("subtotalPriceSet"))
    customer = node.get("customer") if isinstance(node.get("customer"), Mapping) else None
    status = node.get("displayFinancialStatus")
    order: dict[str, Any] = {
        "id": legacy_id(node),
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "email": node.get("email"),
        "phone": node.get("phone"),
        "test": bool(node.get("test")),
        "created_at": node.get("createdAt"),
        "processed_at": node.get("processedAt"),
        "updated_at": node.get("updatedAt"),
        "financial_status": status.lower() if isinstance(status, str) else None,
        "currency": node.get("currencyCode"),
        "presentment_currency": node.get("presentmentCurrencyCode"),
        "total_price": _amount(total),
        "total_price_set": total,
        "subtotal_price": _amount(subtotal),
        "subtotal_price_set": subtotal,
        "note_attributes": [{"name": a.get("key"), "value": a.get("value")}
                            for a in node.get("customAttributes") or [] if isinstance(a, Mapping)],
        "order_status_url": node.get("statusPageUrl"),
        "landing_site": _landing(node.get("customerJourneySummary")),
        "line_items": [_line(line) for line in _nodes(node.get("lineItems"))],
    }
    if customer is not None:
        order["customer"] = {"id": legacy_id(customer), "email": customer.get("email"), "phone": customer.get("phone")}
    return {k: v for k, v in order.items() if v is not None}


def _line(line: Mapping[str, Any]) -> dict[str, Any]:
    price = money_set(line.get("originalUnitPriceSet"))
    return {k: v for k, v in {
        "title": line.get("title"), "quantity": line.get("quantity"), "sku": line.get("sku"),
        "variant_id": legacy_id(line.get("variant")), "product_id": legacy_id(line.get("product")),
        "price": _amount(price), "price_set": price,
    }.items() if v is not None}


__all__ = ["ORDER_FIELDS", "legacy_id", "money_set", "webhook_order"]
