"""What every platform adapter shares: request and notification values, conversion
options and results, the error tree, and the signature helpers.

Adapters are pure: no flask, requests, database or `os`, and no clock (time comes in
as a parameter).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
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
    """The shop header does not name the store the URL points at."""

    status_code = 401


class PayloadError(AdapterError):
    """The body is signed but is not the JSON object the topic promises."""

    status_code = 400


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
    """The store settings an adapter needs to convert a notification."""

    topic_events: Mapping[str, str] = field(default_factory=dict)
    value: str = "total"  # or "subtotal"
    content_id: str = "product"  # or "variant", "sku"
    currency_rates: Mapping[str, Decimal] = field(default_factory=dict)
    report_currency: str = ""
    click_params: tuple[str, ...] = ("click_id",)
    test_mode: bool = False


@dataclass(frozen=True)
class Conversion:
    """One Kwai event an adapter derived, with what the pipeline needs around it.

    - `event.idempotency_key` is the business key within the store
      (`order:<id>:EVENT_PURCHASE`, `cart:<token>:EVENT_ADD_TO_CART:<count>`).
    - `click_source`: where `event.click_id` came from (`attribute`, `order_meta`,
      `landing_url`), None when there is no click id.
    - `skip_reason`: set when the event is kept for the record but never sent.
    - `identifiers`: what attribution can look the shopper up by (`order_id`,
      `order_key`, `checkout_token`, `cart_token`, `customer_id`, `email_sha256`,
      `phone_sha256`).
    - `high_water`: for carts, `(cart key, item count)`; the event is emitted only when
      the count passes the highest count already seen for that key.
    - `value_note`: why the event carries no value, when it does not.
    """

    event: KwaiEvent
    click_source: str | None = None
    skip_reason: str | None = None
    identifiers: Mapping[str, str] = field(default_factory=dict)
    high_water: tuple[str, int] | None = None
    value_note: str | None = None


# -- signature helpers ---------------------------------------------------------------
def require_header(request: WebhookRequest, name: str) -> str:
    value = request.header(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value.strip()


def hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def check_secrets(secrets: Sequence[str]) -> None:
    if not secrets or any(not s for s in secrets):
        raise SignatureError("no webhook secret configured for this store")


def matches_any(received: str, body: bytes, secrets: Sequence[str], *, encodings: Sequence[str]) -> bool:
    """True when `received` equals the HMAC of `body` under any secret, in any encoding.

    Every candidate is compared in constant time; all are computed, so the time taken
    does not tell which secret or encoding came close.
    """
    check_secrets(secrets)
    received_bytes = received.encode("ascii", "replace")
    ok = False
    for secret in secrets:
        digest = hmac_sha256(secret, body)
        for encoding in encodings:
            if encoding == "base64":
                expected = base64.b64encode(digest)
            elif encoding == "hex":
                expected = digest.hex().encode()
                # hex is case-insensitive
                ok |= hmac.compare_digest(expected, received_bytes.lower())
                continue
            else:  # pragma: no cover - programming error
                raise ValueError(encoding)
            ok |= hmac.compare_digest(expected, received_bytes)
    return ok


def normalise_shop(value: str | None) -> str:
    """Compare shop domains and site URLs ignoring case, scheme and a trailing slash."""
    if not value:
        return ""
    v = value.strip().lower()
    for prefix in ("https://", "http://"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    return v.rstrip("/")


def sha256_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def sha256_phone(phone: str | None, *, country_code: str | None = None) -> str | None:
    """Hash a phone after keeping digits only; `country_code` is prefixed when the number
    was written without one (no leading `+`)."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        return None
    if country_code and not phone.strip().startswith("+"):
        cc = "".join(ch for ch in country_code if ch.isdigit())
        if cc and not digits.startswith(cc):
            digits = cc + digits
    return hashlib.sha256(digits.encode("ascii")).hexdigest()
