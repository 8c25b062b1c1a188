"""What every platform's Admin API client shares: the values they return, their errors,
the pure rules that read an answer (wait how long, or give up how), and `Transport`,
the one place a request goes out (timeouts, 429 with Retry-After, backoff on 5xx).
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Protocol

import orjson
import requests

log = logging.getLogger(__name__)

#: Seconds to connect, seconds to wait for an answer.
TIMEOUT = (3.05, 30.0)
#: Waits after a 5xx or a timeout, in turn; after the last, the platform is unavailable.
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
#: The most a 429's Retry-After is waited for at once; a longer one is waited in turns.
MAX_WAIT = 60.0
#: The most answers of 429 (or throttled) taken in one call before giving up.
MAX_THROTTLED = 50


# -- errors --------------------------------------------------------------------------
class PlatformError(Exception):
    """The platform's API did not do what was asked; the message is safe to show."""


class CredentialsRefused(PlatformError):
    """401 or 403: the credentials are wrong, revoked, or lack a permission."""


class Unavailable(PlatformError):
    """5xx, timeouts or throttling that outlasted every wait."""


class Refused(PlatformError):
    """Another 4xx: the platform refused this request (a wrong address, say)."""


# -- values --------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, lower-cased headers, body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None


@dataclass(frozen=True)
class Subscription:
    """One webhook subscription as the platform lists it. `active` is False for a
    WooCommerce webhook `paused` or `disabled`; `version` is the payload's API version
    where the platform pins one."""

    id: str
    topic: str
    address: str
    active: bool = True
    version: str = ""
    status: str = "active"


@dataclass(frozen=True)
class OrdersPage:
    """One page of orders, each in the shape its webhook carries; `last_updated` is
    the latest update time of the page (the checkpoint once the page is committed)."""

    orders: tuple[Mapping[str, Any], ...]
    last_updated: datetime | None


def page_of(orders: Any, *, updated: str) -> OrdersPage:
    """A page of the orders in `orders` (a list from the answer), the latest `updated`
    time its checkpoint; PlatformError when the answer holds no list."""
    if not isinstance(orders, list):
        raise PlatformError("the orders answer holds no list of orders")
    kept = tuple(o for o in orders if isinstance(o, dict))
    times = [t for t in (parse_time(o.get(updated)) for o in kept) if t]
    return OrdersPage(kept, max(times, default=None))


class Client(Protocol):
    """What the bridge asks of a platform's Admin API."""

    def subscriptions(self) -> list[Subscription]: ...

    def create(self, topic: str, address: str, *, secret: str) -> Subscription: ...

    def repair(self, subscription: Subscription, topic: str, address: str, *, secret: str) -> Subscription: ...

    def delete(self, subscription: Subscription) -> None: ...

    def orders(self, *, since: datetime) -> Iterator[OrdersPage]: ...


# -- reading an answer (pure) ----------------------------------------------------------
def retry_after(headers: Mapping[str, str], *, default: float = 1.0) -> float:
    """Seconds a 429 asks to wait (`Retry-After` in seconds, possibly fractional)."""
    raw = headers.get("retry-after", "")
    try:
        seconds = float(raw)
    except ValueError:
        return default
    return min(max(seconds, 0.0), MAX_WAIT) if seconds == seconds else default


def refusal(reply: Reply) -> PlatformError | None:
    """The error an answer is, or None for a 2xx (429 and 5xx are waited on first)."""
    if 200 <= reply.status < 300:
        return None
    message = platform_message(reply)
    if reply.status in (401, 403):
        return CredentialsRefused(f"HTTP {reply.status}: {message}")
    if reply.status == 429 or reply.status >= 500:
        return Unavailable(f"HTTP {reply.status}: {message}")
    return Refused(f"HTTP {reply.status}: {message}")


def platform_message(reply: Reply, *, limit: int = 300) -> str:
    """The platform's own words about an error: `errors`, `message` or the body's start."""
    found = reply.json()
    text = None
    if isinstance(found, dict):
        for key in ("errors", "message", "error", "msg"):
            value = found.get(key)
            if isinstance(value, str) and value:
                text = value
                break
            if isinstance(value, list) and value:
                first = value[0]
                text = first.get("message") if isinstance(first, dict) else str(first)
                break
            if isinstance(value, dict) and value:
                text = "; ".join(f"{k}: {v}" for k, v in value.items())
                break
    if text is None:
        text = reply.body[:limit].decode("utf-8", "replace").strip() or "no message"
    return " ".join(str(text).split())[:limit]


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as aware UTC; a time without offset is UTC (WooCommerce's *_gmt)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found.astimezone(timezone.utc)


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def fingerprint(*credentials: str) -> str:
    """A digest telling credentials apart without keeping them (a truncated SHA-256)."""
    return hashlib.sha256("\0".join(credentials).encode("utf-8")).hexdigest()[:16]


# -- the edge --------------------------------------------------------------------------
@dataclass
class Transport:
    """Sends requests with timeouts; waits out 429s (Retry-After) and backs off on 5xx
    and timeouts; returns the answer or raises. `sleep` is a parameter so that tests and
    benchmarks see every wait without spending it."""

    session: requests.Session = field(default_factory=requests.Session)
    timeout: tuple[float, float] = TIMEOUT
    backoff: tuple[float, ...] = BACKOFF
    sleep: Callable[[float], object] = time.sleep
    #: Requests made and seconds waited, for logs and tests.
    requests_made: int = 0
    waited: float = 0.0

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)

    def request(self, method: str, url: str, *, headers: Mapping[str, str], body: Any = None,
                params: Mapping[str, Any] | None = None, auth: tuple[str, str] | None = None) -> Reply:
        """One request, repeated as its answers ask; a 2xx, a 4xx other than 429, or an error."""
        failures = throttled = 0
        data = orjson.dumps(body) if body is not None else None
        sent_headers = {"Accept": "application/json", **headers}
        if data is not None:
            sent_headers.setdefault("Content-Type", "application/json")
        while True:
            self.requests_made += 1
            try:
                answer = self.session.request(method, url, headers=sent_headers, data=data, params=params,
                                              auth=auth, timeout=self.timeout, allow_redirects=False)
                reply = Reply(answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content)
            except requests.RequestException as exc:  # its text may repeat the URL: only the class
                reply, problem = None, exc.__class__.__name__
            else:
                problem = f"HTTP {reply.status}"
            if reply is not None and reply.status == 429:
                throttled += 1
                if throttled > MAX_THROTTLED:
                    raise Unavailable(f"still throttled after {MAX_THROTTLED} waits")
                self.wait(retry_after(reply.headers))
                continue
            if reply is None or reply.status >= 500:
                if failures >= len(self.backoff):
                    raise Unavailable(f"{problem} after {failures + 1} tries"
                                      + (f": {platform_message(reply)}" if reply is not None else ""))
                log.info("%s %s: %s, trying again in %.0f s", method, _path(url), problem, self.backoff[failures])
                self.wait(self.backoff[failures])
                failures += 1
                continue
            return reply


def _path(url: str) -> str:
    """The URL without its query (which may hold a cursor, never a credential here)."""
    return url.split("?", 1)[0]


__all__ = [
    "BACKOFF", "MAX_THROTTLED", "TIMEOUT", "Client", "CredentialsRefused", "OrdersPage", "PlatformError", "Refused",
    "Reply", "Subscription", "Transport", "Unavailable", "fingerprint", "iso", "parse_time", "platform_message",
    "page_of", "refusal", "retry_after",
]
