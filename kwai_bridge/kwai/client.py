"""Kwai's HTTP client: one I/O method, and a pure function that reads the answer.

`KwaiClient._exchange` is the only code that touches the network; it hands
`(status, headers, body)` to `classify`, which decides between Delivered, Rejected,
RetryLater and Dead as spec/kwai-event-api.md ("How we classify an answer") says, with
one reading the spec leaves open: a `result` Kwai documents decides even when the HTTP
status is not 2xx: a 403 carrying 10006 is a refused token, whose store is held for
replay, not one dead event.

The access token travels in the body (POST) or in the query (GET), so neither the body
nor the GET address is ever logged, and transport errors are reported by class name only
(requests' messages repeat the full address).
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Union

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (ConnectTimeoutError, MaxRetryError, NewConnectionError, ProxyError, ReadTimeoutError,
                                SSLError)

from kwai_bridge.kwai import wire
from kwai_bridge.kwai.events import KwaiEvent

log = logging.getLogger(__name__)


class _RedactToken(logging.Filter):
    """Blanks `access_token=...` in urllib3's debug lines, which print the full GET address."""

    _PATTERN = re.compile(r"(access_token=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1[redacted]", item) if isinstance(item, str) else item
                for item in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._PATTERN.sub(r"\1[redacted]", record.msg)
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(item, _RedactToken) for item in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactToken())

DEFAULT_BASE_URL = "https://www.adsnebula.com/log/common"
#: Under the base URL: where an event is POSTed as JSON, and where it is sent by GET.
POST_PATH = "/api"
GET_PATH = "/gapi"
#: Kwai's result code for a wrong access token: the store's events are held, not discarded.
TOKEN_REFUSED = 10006
#: Kwai's result codes for a refused event; the messages are Kwai's (Chinese in practice).
REJECTION_CODES = frozenset({10001, 10002, 10005, TOKEN_REFUSED, 10007})
_RAW_LIMIT = 2000
_REASON_RAW_LIMIT = 300
_NOT_JSON = object()


# -- outcomes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivered:
    """Kwai answered result 1: the event is recorded."""


@dataclass(frozen=True)
class Rejected:
    """Kwai refused the event with one of its result codes; resending it unchanged fails again."""

    code: int
    message: str

    @property
    def token_refused(self) -> bool:
        """True when the store's access token is wrong (hold the store's events, do not discard)."""
        return self.code == TOKEN_REFUSED


@dataclass(frozen=True)
class RetryLater:
    """A passing failure (network, timeout, 408, 429, 5xx, non-JSON 2xx); `retry_after` in seconds."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Dead:
    """An answer we cannot act on (other 4xx, unknown result); kept for an operator to replay."""

    reason: str


Outcome = Union[Delivered, Rejected, RetryLater, Dead]


@dataclass(frozen=True)
class SendResult:
    """What one send produced: the outcome and the raw answer (body truncated)."""

    outcome: Outcome
    status: int | None
    body: str


# -- classification (pure) -----------------------------------------------------------
def classify(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> Outcome:
    """Read Kwai's answer. A JSON body with a `result` Kwai documents decides whatever the
    HTTP status (a 403 carrying 10006 is a refused token); otherwise the status does.
    `now` only resolves a Retry-After given as an HTTP date when the answer has no Date
    header."""
    try:
        answer = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        answer = _NOT_JSON
    fields = answer if isinstance(answer, dict) else {}
    code = _result_code(fields.get("result"))
    if code == 1:
        return Delivered()
    if code in REJECTION_CODES:
        message = fields.get("error_msg")
        return Rejected(code, message if isinstance(message, str) else "")
    if status in (408, 429) or 500 <= status <= 599:
        return RetryLater(f"HTTP {status}", retry_after(headers, now=now))
    if not 200 <= status <= 299:
        return Dead(f"HTTP {status}: {_raw(body, _REASON_RAW_LIMIT)}")
    if answer is _NOT_JSON:
        return RetryLater(f"HTTP {status} with a body that is not JSON", retry_after(headers, now=now))
    return Dead(f"unknown result {fields.get('result')!r}: {_raw(body, _REASON_RAW_LIMIT)}")


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (delay or HTTP date), or None."""
    text = _header(headers, "retry-after")
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    when = _http_date(text)
    reference = _http_date(_header(headers, "date") or "") or now
    if when is None or reference is None:
        return None
    return max((when - reference).total_seconds(), 0.0)


def _result_code(result: Any) -> int | None:
    if isinstance(result, bool):
        return None
    if isinstance(result, int):
        return result
    if isinstance(result, str) and result.strip().isdigit():
        return int(result.strip())
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _raw(body: bytes, limit: int) -> str:
    text = body.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


# -- the client ----------------------------------------------------------------------
class TransportError(Exception):
    """No HTTP answer arrived (connection refused or reset, timeout); the message is safe to log."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class KwaiClient:
    """Sends one event per request over keep-alive connections."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        pool_size: int = 32,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: (connect, read) seconds: the longest one exchange may take.
        self.timeout = (connect_timeout, read_timeout)
        self._clock = clock
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The proxy and CA-bundle variables (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...)
        # as requests reads them, once.
        settings = session.merge_environment_settings(self.base_url, {}, None, None, None)
        session.proxies.update(settings["proxies"])
        session.verify = settings["verify"]
        self._session, self._adapter = session, adapter
        # Sent with every request: the session's own headers (and the JSON body's type
        # with a POST).
        self._headers = dict(session.headers)
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        # The connection pool the adapter keeps for Kwai's host, set up by requests (the
        # proxy, certificate checks, pool size) and taken once: each request then goes
        # to it directly (`_exchange`).
        post = _prepared(self.base_url + POST_PATH)
        self._pool = adapter.get_connection_with_tls_context(post, session.verify, proxies=session.proxies)
        self._post_target = adapter.request_url(post, session.proxies)
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)

    def send(
        self,
        event: KwaiEvent,
        *,
        pixel_id: str,
        access_token: str,
        track_flag: bool,
        method: str = "post",
    ) -> SendResult:
        """Send one event and classify the answer; EventError if Kwai would refuse it."""
        credentials = dict(pixel_id=pixel_id, access_token=access_token, track_flag=track_flag)
        verb = method.lower()
        try:
            if verb == "post":
                payload = wire.post_json(event, **credentials)
                status, headers, body = self._exchange("POST", self._post_target, body=payload)
            elif verb == "get":
                query = wire.get_query_string(event, **credentials)
                get = _prepared(f"{self.base_url}{GET_PATH}?{query}")
                status, headers, body = self._exchange("GET", self._adapter.request_url(get, self._session.proxies))
            else:
                raise ValueError(f"method must be 'post' or 'get', not {method!r}")
        except TransportError as exc:
            log.info("kwai %s %s: %s", verb.upper(), event.idempotency_key, exc)
            return SendResult(RetryLater(str(exc)), None, "")
        outcome = classify(status, headers, body, now=self._clock())
        log.debug("kwai %s %s: HTTP %s -> %s", verb.upper(), event.idempotency_key, status,
                  type(outcome).__name__)
        return SendResult(outcome, status, _raw(body, _RAW_LIMIT))

    def _exchange(self, method: str, target: str, *, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """Do one HTTP exchange (a JSON `body`, or a GET whose query the wire format
        encoded) with `target`, the address as the adapter sends it (the path, or the
        whole address through a proxy); return (status, lower-cased headers, body) or
        raise TransportError.

        The request goes to the pool of the session's adapter as the adapter itself would
        send it (its target, its retries: none; no redirect followed), without
        `Session.send`'s preparing, hooks, cookie jar and response object: they cost
        more CPU than the exchange on a fast network (CPU per event measured on loopback:
        about 1.8 ms through `Session.send`, 0.8–1.2 ms directly), and a dispatcher draining
        a backlog is bound by it. Kwai's API sets no cookie and needs none."""
        headers = self._headers if body is None else {**self._post_headers, "Content-Length": str(len(body))}
        try:
            response = self._pool.urlopen(
                method, target, body=body, headers=headers, redirect=False, assert_same_host=False,
                retries=self._adapter.max_retries, timeout=self._timeout,
                preload_content=True, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # str(exc) would repeat the address, and the GET address holds the token.
            raise TransportError(f"{_failure_name(exc)} talking to Kwai") from None
        headers = {key.lower(): item for key, item in response.headers.items()}
        return response.status, headers, response.data

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "KwaiClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _prepared(url: str) -> requests.PreparedRequest:
    """A request to `url`, its address checked and encoded as requests does."""
    request = requests.PreparedRequest()
    request.prepare_url(url, None)
    return request


def _failure_name(exc: BaseException) -> str:
    """The name requests gives a failed exchange (`ConnectionError`, `ConnectTimeout`,
    `ReadTimeout`, `ProxyError`, `SSLError`), read off urllib3's error as requests reads it."""
    reason = exc.reason if isinstance(exc, MaxRetryError) else exc
    if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
        return "ConnectTimeout"
    if isinstance(reason, ReadTimeoutError):
        return "ReadTimeout"
    if isinstance(reason, ProxyError):
        return "ProxyError"
    if isinstance(reason, SSLError):
        return "SSLError"
    return "ConnectionError"


__all__ = [
    "DEFAULT_BASE_URL", "GET_PATH", "POST_PATH", "TOKEN_REFUSED", "Dead", "Delivered", "KwaiClient",
    "Outcome", "Rejected", "RetryLater", "SendResult", "TransportError", "classify", "retry_after",
]
