"""Telling who sent a delivery, and hashing what may identify a shopper: HMAC signature
checks, shop names compared as the stores file writes them, hashed e-mails and phones."""
from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

from adapters.values import SignatureError, WebhookRequest


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


@dataclass(frozen=True)
class HmacSignature:
    """A header holding the HMAC-SHA256 of the raw body under the store's webhook secret.

    `header` is spelled as the platform's documentation spells it, for the error;
    `encodings` are the ones the platform sends (`base64`, `hex`).
    """

    header: str
    encodings: tuple[str, ...] = ("base64",)
    name: str = field(init=False, repr=False)  # the header's lower-case name, looked up

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.header.lower())

    def verify(self, request: WebhookRequest, *, secrets: Sequence[str]) -> None:
        """Raise SignatureError unless the header is the HMAC of the raw body under any of
        `secrets`; no secret, or an empty one, is an error too."""
        check_secrets(secrets)
        received = require_header(request, self.name)
        if not matches_any(received, request.body, secrets, encodings=self.encodings):
            raise SignatureError(f"body does not match {self.header}")


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
    was written without one (no leading `+`). Any decimal digit counts as its ASCII digit
    (Arabic-Indic `٣`, full-width `３`), as shoppers type them."""
    if not phone:
        return None
    digits = _digits(phone)
    if not digits:
        return None
    if country_code and not phone.strip().startswith("+"):
        cc = _digits(country_code)
        if cc and not digits.startswith(cc):
            digits = cc + digits
    return hashlib.sha256(digits.encode("ascii")).hexdigest()


def _digits(value: str) -> str:
    # str.isdigit() also holds for superscripts and circled digits, which are no decimal
    # digit and would not encode as ASCII: only Unicode's decimal digits (category Nd) count.
    return "".join(str(d) for d in (unicodedata.decimal(ch, None) for ch in value) if d is not None)
