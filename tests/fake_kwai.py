"""A fake Kwai Event API for tests, the demo and the benchmarks.

It checks every request the way the table of Kwai's manual describes it
(spec/kwai-event-api.md) and answers as Kwai does: 10001 for a missing parameter,
10002 for a wrong type, 10007 for an unknown event name, 10006 for a token it does not
accept, `{"result": 1}` otherwise. It is stricter than Kwai on purpose: every field we
always send is required and unknown fields are refused, so a wrong body fails a test;
a GET query is read as a strict server reads it (`+` is a plus, not a space).
Its lists of names are written out here, not imported, so it does not share our bugs.

    with FakeKwai() as kwai:
        KwaiClient(kwai.base_url).send(...)
        assert len(kwai.successes()) == 1

For chaos tests it fails a share of requests at random (`chaos`): HTTP 5xx, timeouts
(no answer until the client gives up) and 429 with absurd `Retry-After` values. Like
Kwai would not see an answer nobody read, a request whose client gave up before the
answer is recorded as not delivered, so a count of deliveries is exact.

For pacing tests it can refuse what comes faster than a rate (`rate_limit`): a token
bucket answers 429 at once (no latency) to a request that finds it empty.

Run alone: `python -m tests.fake_kwai --port 9000 --latency-ms 50 [--token T]
[--rate-limit 200 [--retry-after 1]] [--verbose]`.
"""
from __future__ import annotations

import argparse
import json
import re
import select
import socket
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from random import Random
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

API_PATH = "/log/common/api"
GAPI_PATH = "/log/common/gapi"
EVENT_NAMES = frozenset("""
    EVENT_ADD_PAYMENT_INFO EVENT_ADD_TO_CART EVENT_BUTTON_CLICK EVENT_PURCHASE
    EVENT_CONTENT_VIEW EVENT_DOWNLOAD EVENT_FORM_SUBMIT EVENT_INITIATED_CHECKOUT
    EVENT_CONTACT EVENT_PLACE_ORDER EVENT_SEARCH EVENT_COMPLETE_REGISTRATION
    EVENT_ADD_TO_WISHLIST EVENT_SUBSCRIBE EVENT_FIRST_DEPOSIT EVENT_CREDIT_APPROVAL
    EVENT_LOAN_APPLICATION EVENT_LOAN_CREDIT EVENT_LOAN_DISBURSAL
    EVENT_CREDIT_CARD_APPLICATION EVENT_VALUE_PRODUCE EVENT_KEY_INAPP_EVENT
    EVENT_KEY_INAPP_EVENT_1 EVENT_KEY_INAPP_EVENT_2 EVENT_KEY_INAPP_EVENT_3
    EVENT_AD_VIEW EVENT_AD_CLICK EVENT_PURCHASE_1_DAY EVENT_PURCHASE_2_DAY
    EVENT_PURCHASE_3_DAY EVENT_PURCHASE_7_DAY EVENT_COMPLETE_TRANSACTION
""".split())
REQUIRED = ("access_token", "clickid", "event_name", "pixelId", "testFlag", "trackFlag",
            "is_attributed", "mmpcode", "pixelSdkVersion", "third_party")
OPTIONAL = ("properties", "currency", "value")
CURRENCIES = frozenset({"BRL", "IDR", "USD"})
THIRD_PARTIES = frozenset({"shopify", "shopline", "woocommerce"})
MESSAGES = {
    10001: "缺少参数{}",
    10002: "参数{}类型错误",
    10005: "callback字段不合法",
    10006: "token不合法，请求被拒绝",
    10007: "eventName不合法，请求被拒绝",
}
_DECIMAL = re.compile(r"-?\d+(\.\d+)?\Z")
_TEXT_PROPS = ("content_id", "content_name", "content_category", "query", "mapping_id")
#: Retry-After values no server should send: years, past any date, negative, not a number,
#: a date at the end of time.
ABSURD_RETRY_AFTERS = ("1000000000", "1e20", "-5", "nan", "soon", "Fri, 31 Dec 9999 23:59:59 GMT")
#: The failures `chaos` mixes, in equal parts.
CHAOS_KINDS = ("5xx", "timeout", "429")
#: The longest a "timeout" holds a request open waiting for the client to give up.
HANG_SECONDS = 120.0


class Refused(Exception):
    """The request breaks one of Kwai's rules; `code` is the result Kwai answers."""

    def __init__(self, code: int, name: str = "") -> None:
        super().__init__(MESSAGES[code].format(name))
        self.code = code


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it, and the answer it gave (`result` None if not Kwai JSON)."""

    method: str
    path: str
    fields: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    time: float
    status: int
    result: int | None
    answered: bool = True  # False: dropped, held until the client gave up, or the client left first

    @property
    def properties(self) -> dict[str, Any]:
        return json.loads(self.fields.get("properties") or "{}")


def check(fields: dict[str, Any], *, typed: bool, accepted_tokens: set[str] | None) -> None:
    """Raise Refused for what Kwai refuses; `typed` is False for GET (every value is text)."""
    for name in REQUIRED:
        if fields.get(name) in (None, ""):
            raise Refused(10001, name)
    for name in fields:
        if name not in REQUIRED and name not in OPTIONAL:
            raise Refused(10002, name)
    for name in ("currency", "value"):
        if ("currency" in fields or "value" in fields) and fields.get(name) in (None, ""):
            raise Refused(10001, name)
    if typed:
        _expect(fields["testFlag"] is False, "testFlag")
        _expect(isinstance(fields["trackFlag"], bool), "trackFlag")
        _expect(type(fields["is_attributed"]) is int and fields["is_attributed"] == 1, "is_attributed")
    else:
        _expect(fields["testFlag"] == "false", "testFlag")
        _expect(fields["trackFlag"] in ("true", "false"), "trackFlag")
        _expect(fields["is_attributed"] == "1", "is_attributed")
    for name, item in fields.items():
        if name not in ("testFlag", "trackFlag", "is_attributed"):
            _expect(isinstance(item, str), name)
    _expect(fields["mmpcode"] == "PL", "mmpcode")
    _expect(fields["pixelSdkVersion"] == "9.9.9", "pixelSdkVersion")
    _expect(fields["third_party"] in THIRD_PARTIES, "third_party")
    if "currency" in fields:
        _expect(fields["currency"] in CURRENCIES, "currency")
        _expect(bool(_DECIMAL.match(fields["value"])), "value")
    if "properties" in fields:
        _check_properties(fields["properties"])
    if fields["event_name"] not in EVENT_NAMES:
        raise Refused(10007)
    if accepted_tokens is not None and fields["access_token"] not in accepted_tokens:
        raise Refused(10006)


def _check_properties(text: str) -> None:
    try:
        props = json.loads(text)
    except ValueError:
        raise Refused(10002, "properties") from None
    _expect(isinstance(props, dict), "properties")
    if "event_timestamp" not in props:
        raise Refused(10001, "event_timestamp")
    # Milliseconds: a value in seconds (10 digits) is a bug on the sender's side.
    _expect(_is_int(props["event_timestamp"]) and props["event_timestamp"] > 10**12, "event_timestamp")
    if "content_type" in props:
        _expect(props["content_type"] in ("product", "product_group"), "content_type")
    if "quantity" in props:
        _expect(_is_int(props["quantity"]), "quantity")
    for name in _TEXT_PROPS:
        if name in props:
            _expect(isinstance(props[name], str), name)
    for item in props.get("contents", []):
        _expect(isinstance(item, dict) and isinstance(item.get("id"), str), "contents")
        _expect(_is_int(item.get("quantity")), "contents.quantity")
        if "price" in item:
            _expect(_is_number(item["price"]), "contents.price")
    _expect(isinstance(props.get("contents", []), list), "contents")


def _is_int(item: Any) -> bool:
    return type(item) is int


def _is_number(item: Any) -> bool:
    return type(item) in (int, float)


def _expect(condition: bool, name: str) -> None:
    if not condition:
        raise Refused(10002, name)


@dataclass(frozen=True)
class _Canned:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    drop: bool = False
    result: int | None = None
    hang: bool = False  # no answer until the client gives up (a timeout on its side)


@dataclass
class _Bucket:
    """A token bucket: `rate` tokens a second, up to `size`; `refusal` when it is empty."""

    rate: float
    size: float
    refusal: _Canned
    tokens: float
    at: float


def _kwai_body(code: int, message: str | None = None) -> bytes:
    answer: dict[str, Any] = {"result": code}
    if code != 1:
        answer["error_msg"] = message if message is not None else MESSAGES[code].format("")
    return json.dumps(answer, ensure_ascii=False).encode()


_DELIVERED = _Canned(200, _kwai_body(1), (), result=1)
_NOT_FOUND = _Canned(404, b'{"error":"not found"}', ())


def _client_gone(conn: socket.socket) -> bool:
    """Whether the peer closed the connection (it timed out and gave up)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _wait_until_gone(conn: socket.socket, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not _client_gone(conn):
        select.select([conn], [], [], 0.05)


class _Server(ThreadingHTTPServer):
    # Many senders connecting at once must not overflow the listen queue: a dropped
    # SYN is sent again only after a second, longer than some tests' connect timeout.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client killed mid-request (the chaos test does it on purpose)
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeKwai/1.0"
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed per request)
    timeout = 60  # idle keep-alive connections end, and so do their threads

    def setup(self) -> None:
        super().setup()
        self.server.fake._connected()  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        pass


class FakeKwai:
    """A threaded HTTP/1.1 fake of Kwai's Event API on loopback; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0,
                 accepted_tokens: set[str] | None = None, verbose: bool = False) -> None:
        self.latency = latency
        self.accepted_tokens = accepted_tokens
        self.verbose = verbose
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._received: list[Received] = []
        self._delivered = 0
        self._connections = 0
        self._canned: deque[_Canned] = deque()
        self._chaos_share = 0.0
        self._chaos_rng: Random | None = None
        self._chaos_kinds: tuple[str, ...] = CHAOS_KINDS
        self._retry_afters: tuple[str, ...] = ABSURD_RETRY_AFTERS
        self.chaos_counts: Counter[str] = Counter()  # failures given by `chaos`, by kind
        self._bucket: _Bucket | None = None
        self._server = _Server((host, port), _Handler, bind_and_activate=True)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- life ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/log/common"

    def start(self) -> "FakeKwai":
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kwai",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "FakeKwai":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- programming and inspection -----------------------------------------------
    def fail_next(self, n: int = 1, *, status: int | None = None, result_code: int | None = None,
                  body: bytes | None = None, retry_after: float | str | None = None,
                  location: str | None = None, drop: bool = False) -> None:
        """Answer the next `n` requests with a failure instead of checking them.

        Default HTTP 503; `result_code` answers HTTP 200 with that Kwai result; `body`
        answers those raw bytes (HTTP 200 unless `status`); `drop` closes the connection
        without an answer; `retry_after` adds a Retry-After header, `location` a Location
        header (with a 3xx `status`, a redirect).
        """
        if result_code is not None and body is not None:
            raise ValueError("give result_code or body, not both")
        default = 200
        if result_code is not None:
            body = _kwai_body(result_code)
        elif body is None:
            default = 503
            body = json.dumps({"status": status or default, "error": "unavailable"}).encode()
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None:
            text = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            headers = (("Retry-After", text),)
        if location is not None:
            headers += (("Location", location),)
        canned = _Canned(status or default, body, headers, drop,
                         None if drop or (status or default) != 200 else result_code)
        with self._lock:
            self._canned.extend([canned] * n)

    def chaos(self, share: float, *, rng: Random, kinds: Sequence[str] = CHAOS_KINDS,
              retry_afters: Sequence[str] = ABSURD_RETRY_AFTERS) -> None:
        """From now on fail `share` (0 to 1) of the requests, drawn with `rng`, with one of
        `kinds` chosen alike: "5xx" (500, 502, 503 or 504), "timeout" (no answer until
        the client gives up) or "429" (with one of `retry_afters`). `share` 0 stops it."""
        unknown = set(kinds) - set(CHAOS_KINDS)
        if unknown or not 0 <= share <= 1:
            raise ValueError(f"share must be within [0, 1] and kinds among {CHAOS_KINDS}")
        with self._lock:
            self._chaos_share, self._chaos_rng = share, rng
            self._chaos_kinds, self._retry_afters = tuple(kinds), tuple(retry_afters)

    def rate_limit(self, per_second: float | None, *, burst: float | None = None,
                   retry_after: float | None = None) -> None:
        """From now on answer 429 (with `retry_after` seconds in Retry-After, if given) to
        a request beyond `per_second` on average, with bursts of `burst` requests allowed
        (default: a tenth of a second's worth, at least 1). None lifts the limit."""
        bucket = None
        if per_second is not None:
            if per_second <= 0:
                raise ValueError("per_second must be positive")
            size = max(1.0, per_second / 10) if burst is None else burst
            headers = () if retry_after is None else (("Retry-After", f"{retry_after:g}"),)
            body = json.dumps({"status": 429, "error": "too many requests"}).encode()
            bucket = _Bucket(per_second, size, _Canned(429, body, headers), tokens=size, at=time.monotonic())
        with self._lock:
            self._bucket = bucket

    def _throttle(self) -> _Canned | None:
        """The rate limit's refusal of a request arriving now, or None (a token taken)."""
        with self._lock:
            bucket = self._bucket
            if bucket is None:
                return None
            now = time.monotonic()
            bucket.tokens = min(bucket.size, bucket.tokens + (now - bucket.at) * bucket.rate)
            bucket.at = now
            if bucket.tokens < 1:
                return bucket.refusal
            bucket.tokens -= 1
            return None

    def _chaos_failure(self) -> _Canned | None:
        """A failure for this request, or None (under `_lock`)."""
        rng = self._chaos_rng
        if not self._chaos_share or rng is None or rng.random() >= self._chaos_share:
            return None
        kind = rng.choice(self._chaos_kinds)
        self.chaos_counts[kind] += 1
        if kind == "timeout":
            return _Canned(504, b"", (), hang=True)
        if kind == "429":
            body = json.dumps({"status": 429, "error": "too many requests"}).encode()
            return _Canned(429, body, (("Retry-After", rng.choice(self._retry_afters)),))
        status = rng.choice((500, 502, 503, 504))
        return _Canned(status, json.dumps({"status": status, "error": "unavailable"}).encode(), ())

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted (keep-alive keeps this low)."""
        with self._lock:
            return self._connections

    def _connected(self) -> None:
        with self._lock:
            self._connections += 1

    def successes(self) -> list[Received]:
        return [item for item in self.received if item.result == 1]

    def wait_for(self, count: int, *, timeout: float = 5.0) -> bool:
        """Block until `count` requests were answered result 1; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._delivered < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def reset(self) -> None:
        """Forget recorded requests, pending failures, chaos and the rate limit (latency
        and tokens stay as set)."""
        with self._lock:
            self._bucket = None
            self._received.clear()
            self._delivered = 0
            self._connections = 0
            self._canned.clear()
            self._chaos_share, self._chaos_rng = 0.0, None
            self.chaos_counts.clear()

    # -- serving ------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        refusal = self._throttle()
        if self.latency and refusal is None:
            time.sleep(self.latency)
        fields, canned = self._answer(handler, url, raw, refusal)
        if canned.hang:
            _wait_until_gone(handler.connection, HANG_SECONDS)
        # A client that gave up before the answer never learns it: not a delivery.
        answered = not (canned.drop or canned.hang or _client_gone(handler.connection))
        entry = Received(handler.command, url.path, fields, raw, dict(handler.headers.items()),
                         time.time(), canned.status, canned.result if answered else None, answered)
        # Recorded before answering, so a client that has its answer finds the record.
        with self._changed:
            self._received.append(entry)
            self._delivered += entry.result == 1
            self._changed.notify_all()
        if not answered:
            handler.close_connection = True
        else:
            handler.send_response(canned.status)
            handler.send_header("Content-Type", "application/json;charset=UTF-8")
            handler.send_header("Content-Length", str(len(canned.body)))
            for name, text in canned.headers:
                handler.send_header(name, text)
            handler.end_headers()
            handler.wfile.write(canned.body)
        if self.verbose:
            print(f"{entry.method} {fields.get('event_name')} clickid={str(fields.get('clickid'))[:16]}"
                  f" -> HTTP {entry.status} result {entry.result}", flush=True)

    def _answer(self, handler: BaseHTTPRequestHandler, url: Any, raw: bytes, refusal: _Canned | None
                ) -> tuple[dict[str, Any], _Canned]:
        """Return the parsed fields and the answer to give (`refusal` if the rate limit gave one)."""
        expected = API_PATH if handler.command == "POST" else GAPI_PATH
        if url.path != expected:
            return {}, _NOT_FOUND
        try:
            fields, refused = self._fields(handler, url, raw), None
        except Refused as exc:
            fields, refused = {}, exc
        if refusal is not None:
            return fields, refusal
        with self._lock:
            canned = self._canned.popleft() if self._canned else self._chaos_failure()
        if canned is not None:
            return fields, canned
        if refused is None:
            try:
                check(fields, typed=handler.command == "POST", accepted_tokens=self.accepted_tokens)
            except Refused as exc:
                refused = exc
        if refused is not None:
            return fields, _Canned(200, _kwai_body(refused.code, str(refused)), (), result=refused.code)
        return fields, _DELIVERED

    @staticmethod
    def _fields(handler: BaseHTTPRequestHandler, url: Any, raw: bytes) -> dict[str, Any]:
        if handler.command == "GET":
            return _strict_query(url.query)
        if not (handler.headers.get("Content-Type") or "").startswith("application/json"):
            raise Refused(10002, "Content-Type")
        try:
            fields = json.loads(raw)
        except ValueError:
            raise Refused(10002, "body") from None
        if not isinstance(fields, dict):
            raise Refused(10002, "body")
        return fields


def _strict_query(query: str) -> dict[str, str]:
    """The query's fields, read as a strict server reads them: `%XX` is UTF-8 and `+` is a
    plus (form encoding's space is not assumed); a repeated or malformed field is 10002."""
    fields: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, sep, text = pair.partition("=")
        try:
            name, text = unquote(name, errors="strict"), unquote(text, errors="strict")
        except UnicodeDecodeError:
            raise Refused(10002, name) from None
        if not sep or name in fields:
            raise Refused(10002, name)
        fields[name] = text
    return fields


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Kwai Event API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--token", action="append", help="accept only these tokens (repeatable)")
    parser.add_argument("--rate-limit", type=float, help="answer 429 beyond this many requests/s")
    parser.add_argument("--retry-after", type=float, help="the Retry-After of those 429s, in seconds")
    parser.add_argument("--verbose", action="store_true", help="print each request briefly")
    args = parser.parse_args(argv)
    fake = FakeKwai(args.host, args.port, latency=args.latency_ms / 1000,
                    accepted_tokens=set(args.token) if args.token else None, verbose=args.verbose)
    if args.rate_limit:
        fake.rate_limit(args.rate_limit, retry_after=args.retry_after)
    with fake:
        print(fake.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
