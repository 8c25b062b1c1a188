"""The values adapters take and give, and their error tree: the raw webhook request,
the parsed notification, a store's conversion options, the conversions and privacy
requests derived from a notification.

Adapters are pure: no flask, requests, database or `os`, and no clock (time comes in
as a parameter).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping, Sequence

from kwai_bridge.kwai.events import KwaiEvent


# -- errors --------------------------------------------------------------------------
class AdapterError(Exception):
    """A webhook that cannot be accepted; `status_code` is the HTTP answer."""

    status_code = 400


class SignatureError(AdapterError):
    """The signature header is missing or does not match the body."""

    status_code = 401


class ShopMismatchError(AdapterError):
    """The shop header, or the shop the body names, is not the store's."""

    status_code = 401


class PayloadError(AdapterError):
    """The body is signed but is not the JSON object the topic promises."""

    status_code = 400


class TopicMismatchError(PayloadError):
    """The signed body is another topic's: the topic header, which is not signed, was changed."""


# -- values --------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookRequest:
    """The raw HTTP request as received: lower-cased header names, exact body bytes."""

    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def build(cls, headers: Mapping[str, str] | Sequence[tuple[str, str]], body: bytes) -> "WebhookRequest":
        items = headers.items() if isinstance(headers, Mapping) else headers
        return cls(headers={k.lower(): v for k, v in items}, body=body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Notification:
    """A verified, parsed webhook. `kind` is `conversion`, `privacy` or `ping`."""

    platform: str
    topic: str
    shop: str | None
    delivery_id: str | None
    payload: Mapping[str, Any]
    kind: str = "conversion"


@dataclass(frozen=True)
class ConversionOptions:
    """The store settings an adapter needs to convert a notification.

    `events` (None: every name) and `mapping_id` (which identifier goes as Kwai's
    `mapping_id`; "": none) are applied to an adapter's conversions by
    `adapters.convert.store_choices`, the same for every platform.
    """

    topic_events: Mapping[str, str] = field(default_factory=dict)
    value: str = "total"  # or "subtotal"
    content_id: str = "product"  # or "variant", "sku"
    content_type: str = "product"  # or "product_group": the catalog holds products by group
    currency_rates: Mapping[str, Decimal] = field(default_factory=dict)
    report_currency: str = ""
    click_params: tuple[str, ...] = ("click_id",)
    test_mode: bool = False
    events: frozenset[str] | None = None
    mapping_id: str = ""  # or "customer_id", "email_sha256", "phone_sha256"
    subscription_renewals: str = "skip"  # or "purchase": a renewal order is sent as a purchase


@dataclass(frozen=True)
class Conversion:
    """One Kwai event an adapter derived, with what the pipeline needs around it.

    - `event.idempotency_key` is the business key within the store
      (`order:<id>:EVENT_PURCHASE`, `cart:<token>:EVENT_ADD_TO_CART:<count>`).
    - `click_source`: where `event.click_id` came from (`attribute`, `order_meta`,
      `landing_url`), None when there is no click id.
    - `skip_reason`: set when the event is kept for the record but never sent.
    - `identifiers`: what attribution can look the shopper up by (`order_id`,
      `order_key` (the order's own secret: WooCommerce's order key, Shopify's order
      token), `checkout_token`, `cart_token`, `customer_id`, `email_sha256`,
      `phone_sha256`).
    - `high_water`: for carts, `(cart key, item count)`; the event is emitted only when
      the count passes the highest count already seen for that key.
    - `value_note`: why the event carries no value, when it does not.
    - `click_note`: why a click id the payload offered was not used (one that may have
      been corrupted on the way), when that is why the event has none.
    - `within_days`: an N-day purchase, sent only when its click was stored at most N
      days before (decided at attribution; adapters.later).
    - `withdraw`: the order was cancelled or refunded: the event of this business key,
      if not sent yet, is skipped with `skip_reason` (kwai_bridge.outbox.withdrawals).
    """

    event: KwaiEvent
    click_source: str | None = None
    skip_reason: str | None = None
    identifiers: Mapping[str, str] = field(default_factory=dict)
    high_water: tuple[str, int] | None = None
    value_note: str | None = None
    click_note: str | None = None
    within_days: int | None = None
    withdraw: bool = False


@dataclass(frozen=True)
class PrivacyRequest:
    """What a privacy topic asks of us, with the shopper identified by id and hashes only."""

    action: str  # "redact_customer" | "redact_shop" | "data_request"
    customer_id: str | None = None
    email_sha256: str | None = None
    phone_sha256: str | None = None
    order_ids: tuple[str, ...] = ()
