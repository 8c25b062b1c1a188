"""Reading a webhook: its body as a JSON object, its headers, and the values in its
payload.

Payload values are read defensively: a field of the wrong type counts as absent, so a
strange payload gives fewer details or a PayloadError, never a TypeError.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

import orjson

from adapters.values import PayloadError, WebhookRequest

#: The longest id, token or header value read: the database indexes them (PostgreSQL
#: refuses an index entry over about 2.7 KB), and a platform's ids are a few dozen
#: characters.
MAX_ID_LENGTH = 512
#: The largest count read (a quantity): the database keeps counts as 32-bit integers.
MAX_COUNT = 2**31 - 1
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


# -- reading the request -----------------------------------------------------------------
def load_object(body: bytes) -> dict[str, Any]:
    """Parse `body` as a JSON object or raise PayloadError.

    orjson parses a webhook's body in less than half the time of the standard library.
    What it refuses (a lone surrogate, a number beyond a double, a byte order mark) goes
    to the standard library, so that no signed body the platforms send is turned away;
    NaN and Infinity stay refused. Integers beyond 64 bits are read as floats by orjson;
    the platforms' ids are 64-bit.

    A lone surrogate (a `\\ud83d` escape left by a title cut in the middle of an emoji)
    is not a character and can be neither stored nor hashed: it is read as U+FFFD, the
    way any UTF-8 reader reads a broken sequence, so that the rest of the body still
    counts. Only the standard library lets one through, so only its path pays for that.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = _without_lone_surrogates(json.loads(body, parse_constant=_refuse_constant))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise PayloadError(f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body is a JSON {type(data).__name__}, not an object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _without_lone_surrogates(data: Any) -> Any:
    """`data` with every lone surrogate in its strings (keys too) read as U+FFFD.

    Iterative: the standard library parses nesting as deep as the recursion limit allows.
    """
    root = [data]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        holder, key = stack.pop()
        value = holder[key]
        if isinstance(value, str):
            holder[key] = _scrub(value)
        elif isinstance(value, list):
            stack.extend((value, i) for i in range(len(value)))
        elif isinstance(value, dict):
            if any(_LONE_SURROGATE.search(k) for k in value):
                value = holder[key] = {_scrub(k): v for k, v in value.items()}
            stack.extend((value, k) for k in value)
    return root[0]


def _scrub(value: str) -> str:
    return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)


def header_value(request: WebhookRequest, name: str) -> str | None:
    """A header's value, stripped; None when absent or blank. PayloadError when it cannot
    be stored (a NUL, or longer than any topic or delivery id)."""
    value = request.header(name)
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if "\x00" in value or len(value) > MAX_ID_LENGTH:
        raise PayloadError(f"the {name} header holds a NUL or is over {MAX_ID_LENGTH} characters")
    return value


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
    """The first non-blank string among `values`, stripped; one holding a NUL (which
    PostgreSQL cannot store in text) counts as absent."""
    for value in values:
        if isinstance(value, str):
            value = value.strip()
            if value and "\x00" not in value:
                return value
    return None


def ident(value: Any) -> str | None:
    """An id as an exact string (Shopify ids pass 2^53); 0 and blanks mean absent, and so
    does what cannot be a platform's id: longer than MAX_ID_LENGTH, or holding U+FFFD
    (a lone surrogate as read) or a NUL."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        found = str(value) if value else None
    else:
        found = text(value)
    if found is None or found == "0" or len(found) > MAX_ID_LENGTH or "\ufffd" in found:
        return None
    return found


def count(value: Any) -> int:
    """A non-negative count; what is not one, or is over MAX_COUNT, counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 < value <= MAX_COUNT else 0


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
