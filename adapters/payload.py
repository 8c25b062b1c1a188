"""Reading a webhook: its body as a JSON object, its headers, and the values in its
payload.

Payload values are read defensively: a field of the wrong type counts as absent, so a
strange payload gives fewer details or a PayloadError, never a TypeError.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

import orjson

from adapters.values import PayloadError, WebhookRequest


# -- reading the request -----------------------------------------------------------------
def load_object(body: bytes) -> dict[str, Any]:
    """Parse `body` as a JSON object or raise PayloadError.

    orjson parses a webhook's body in less than half the time of the standard library.
    What it refuses (a lone surrogate, a number beyond a double, a byte order mark) goes
    to the standard library, so that no signed body the platforms send is turned away;
    NaN and Infinity stay refused. Integers beyond 64 bits are read as floats by orjson;
    the platforms' ids are 64-bit.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PayloadError(f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body is a JSON {type(data).__name__}, not an object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def header_value(request: WebhookRequest, name: str) -> str | None:
    value = request.header(name)
    return value.strip() if isinstance(value, str) and value.strip() else None


def body_key(topic: str, body: bytes) -> str:
    """The delivery key when the platform gives no stable delivery id."""
    return hashlib.sha256(topic.encode("utf-8", "replace") + b"\n" + body).hexdigest()


# -- reading payload values ----------------------------------------------------------
# `type(v) is dict` first: JSON gives dicts, and the check against the Mapping ABC costs
# several times more on the webhook path, where these run dozens of times per request.
def obj(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def items(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value if type(v) is dict or isinstance(v, Mapping)]


def text(*values: Any) -> str | None:
    """The first non-blank string among `values`, stripped."""
    for value in values:
        if isinstance(value, str):
            value = value.strip()
            if value:
                return value
    return None


def ident(value: Any) -> str | None:
    """An id as an exact string (Shopify ids pass 2^53); 0 and blanks mean absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value else None
    found = text(value)
    return None if found in (None, "0") else found


def count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    return max(value, 0) if isinstance(value, int) else 0


def money(value: Any) -> Decimal | None:
    """A Decimal from a string or number (via str, never float arithmetic); blank = None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def when(payload: Mapping[str, Any], keys: Sequence[str], *, naive_is_utc: bool = False) -> datetime | None:
    """The first of `keys` that holds an ISO 8601 time, as aware UTC."""
    for key in keys:
        raw = text(payload.get(key))
        if raw is None:
            continue
        try:
            moment = datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                if not naive_is_utc:
                    continue  # a local time without offset cannot be placed
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            continue
    return None


def required_time(moment: datetime | None, what: str) -> datetime:
    if moment is None:
        raise PayloadError(f"{what} carries no usable time")
    return moment


def required_id(value: Any, what: str) -> str:
    found = ident(value)
    if found is None:
        raise PayloadError(f"{what} has no id")
    return found
