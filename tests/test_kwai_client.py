"""Kwai's client: `classify` as a table over the spec, and the client over loopback."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from kwai_bridge.kwai.client import Dead, Delivered, KwaiClient, Rejected, RetryLater, classify
from kwai_bridge.kwai.events import EventError, KwaiEvent
from kwai_bridge.kwai.wire import get_query
from tests.fake_kwai import FakeKwai
from tests.serving import free_port

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
TOKEN = "tok-very-secret"
EVENT = KwaiEvent(
    event_name="EVENT_PURCHASE", event_time=NOW, third_party="shopline",
    idempotency_key="order:7:EVENT_PURCHASE", click_id="ck+1/2=",
)
CREDS = dict(pixel_id="px-1", access_token=TOKEN, track_flag=False)


def kwai(answer: dict) -> bytes:
    return json.dumps(answer, ensure_ascii=False).encode()


CLASSIFY = [
    # delivered: result 1, number or string
    ("result 1", 200, {}, kwai({"result": 1}), Delivered()),
    ("result '1'", 200, {}, kwai({"result": "1"}), Delivered()),
    ("result 1 with extras", 200, {}, kwai({"result": 1, "error_msg": ""}), Delivered()),
    # rejected, never retried as is
    ("10001", 200, {}, kwai({"result": 10001, "error_msg": "缺少参数clickid"}),
     Rejected(10001, "缺少参数clickid")),
    ("10002", 200, {}, kwai({"result": 10002, "error_msg": "参数value类型错误"}),
     Rejected(10002, "参数value类型错误")),
    ("10005", 200, {}, kwai({"result": 10005, "error_msg": "callback字段不合法"}),
     Rejected(10005, "callback字段不合法")),
    ("10006", 200, {}, kwai({"result": 10006, "error_msg": "token不合法，请求被拒绝"}),
     Rejected(10006, "token不合法，请求被拒绝")),
    ("10007", 200, {}, kwai({"result": 10007, "error_msg": "eventName不合法，请求被拒绝"}),
     Rejected(10007, "eventName不合法，请求被拒绝")),
    ("10007 as string", 200, {}, kwai({"result": "10007"}), Rejected(10007, "")),
    # a result Kwai documents decides whatever the HTTP status
    ("10006 with 403", 403, {}, kwai({"result": 10006, "error_msg": "token不合法，请求被拒绝"}),
     Rejected(10006, "token不合法，请求被拒绝")),
    ("10006 with 401", 401, {}, kwai({"result": "10006"}), Rejected(10006, "")),
    ("10001 with 400", 400, {}, b'{"result": 10001}', Rejected(10001, "")),
    ("10007 with 404", 404, {}, kwai({"result": 10007, "error_msg": "eventName不合法"}),
     Rejected(10007, "eventName不合法")),
    ("10006 with 429", 429, {"Retry-After": "60"}, kwai({"result": 10006}), Rejected(10006, "")),
    ("10005 with 500", 500, {}, kwai({"result": 10005}), Rejected(10005, "")),
    ("result 1 with 202", 202, {}, kwai({"result": 1}), Delivered()),
    ("result 1 with 500", 500, {}, kwai({"result": 1}), Delivered()),
    # retry later
    ("408", 408, {}, b"", RetryLater("HTTP 408")),
    ("429", 429, {}, b"slow down", RetryLater("HTTP 429")),
    ("429 Retry-After seconds", 429, {"Retry-After": "120"}, b"", RetryLater("HTTP 429", 120.0)),
    ("503 Retry-After lower-case", 503, {"retry-after": "30"}, b"", RetryLater("HTTP 503", 30.0)),
    ("503 Retry-After date vs Date", 503,
     {"Retry-After": "Wed, 01 May 2024 12:05:00 GMT", "Date": "Wed, 01 May 2024 12:00:00 GMT"},
     b"", RetryLater("HTTP 503", 300.0)),
    ("503 Retry-After date vs now", 503, {"Retry-After": "Wed, 01 May 2024 12:01:00 GMT"},
     b"", RetryLater("HTTP 503", 60.0)),
    ("503 Retry-After in the past", 503, {"Retry-After": "Wed, 01 May 2024 11:00:00 GMT"},
     b"", RetryLater("HTTP 503", 0.0)),
    ("503 Retry-After garbage", 503, {"Retry-After": "soon"}, b"", RetryLater("HTTP 503")),
    ("500", 500, {}, b"oops", RetryLater("HTTP 500")),
    ("503 with an unknown result", 503, {}, kwai({"result": 10003}), RetryLater("HTTP 503")),
    ("503 with JSON of its own", 503, {}, kwai({"status": 503, "error": "unavailable"}), RetryLater("HTTP 503")),
    ("502", 502, {}, b"", RetryLater("HTTP 502")),
    ("599", 599, {}, b"", RetryLater("HTTP 599")),
    ("2xx not JSON", 200, {}, b"<html>busy</html>",
     RetryLater("HTTP 200 with a body that is not JSON")),
    ("2xx empty", 200, {}, b"", RetryLater("HTTP 200 with a body that is not JSON")),
    ("2xx not UTF-8", 200, {}, b"\xff\xfe", RetryLater("HTTP 200 with a body that is not JSON")),
    ("2xx not JSON Retry-After", 200, {"Retry-After": "5"}, b"x",
     RetryLater("HTTP 200 with a body that is not JSON", 5.0)),
]

DEAD = [
    ("400", 400, b'{"error": "bad request"}', "HTTP 400"),
    ("403 unknown result", 403, kwai({"result": 10003}), "HTTP 403"),
    ("401", 401, b"unauthorised", "HTTP 401: unauthorised"),
    ("403", 403, b"", "HTTP 403"),
    ("404", 404, b"not found", "HTTP 404: not found"),
    ("413", 413, b"", "HTTP 413"),
    ("302", 302, b"", "HTTP 302"),
    ("unknown result", 200, kwai({"result": 10003, "error_msg": "x"}), "unknown result 10003"),
    ("no result", 200, kwai({"status": "ok"}), "unknown result None"),
    ("result true", 200, b'{"result": true}', "unknown result True"),
    ("result 0", 200, b'{"result": 0}', "unknown result 0"),
    ("JSON list", 200, b"[1]", "unknown result None"),
]


@pytest.mark.parametrize("name, status, headers, body, expected", CLASSIFY,
                         ids=[row[0] for row in CLASSIFY])
def test_classify(name, status, headers, body, expected):
    assert classify(status, headers, body, now=NOW) == expected


@pytest.mark.parametrize("name, status, body, words", DEAD, ids=[row[0] for row in DEAD])
def test_classify_dead_keeps_the_answer(name, status, body, words):
    outcome = classify(status, {}, body, now=NOW)
    assert isinstance(outcome, Dead)
    assert words in outcome.reason


def test_dead_reason_is_truncated():
    outcome = classify(400, {}, b"x" * 50_000)
    assert isinstance(outcome, Dead) and len(outcome.reason) < 1000


def test_token_refused():
    assert Rejected(10006, "").token_refused
    assert not any(Rejected(code, "").token_refused for code in (10001, 10002, 10005, 10007))


def test_retry_after_date_without_reference_is_ignored():
    assert classify(503, {"Retry-After": "Wed, 01 May 2024 12:01:00 GMT"}, b"") == RetryLater(
        "HTTP 503")


# -- over loopback ----------------------------------------------------------------------
@pytest.fixture
def fake():
    with FakeKwai(accepted_tokens={TOKEN}) as server:
        yield server


@pytest.fixture
def client(fake):
    # Timeouts far above a loopback answer, so that a busy machine does not turn an answer
    # into a timeout; the timeout tests make their own client.
    with KwaiClient(fake.base_url, connect_timeout=5.0, read_timeout=10.0, pool_size=4) as kwai_client:
        yield kwai_client


@pytest.mark.parametrize("method, path", [("post", "/log/common/api"), ("get", "/log/common/gapi")])
def test_delivered(fake, client, method, path):
    sent = client.send(EVENT, method=method, **CREDS)
    assert sent.outcome == Delivered()
    assert sent.status == 200 and json.loads(sent.body) == {"result": 1}
    [seen] = fake.successes()
    assert seen.method == method.upper() and seen.path == path
    assert seen.fields["clickid"] == "ck+1/2=" and seen.fields["pixelId"] == "px-1"
    if method == "post":
        assert seen.headers["Content-Type"] == "application/json"


AWKWARD = replace(EVENT, content_name='Camisa "azul" & verde = 100% algodão + ção', content_id="a b&c=d",
                  content_category="Moda/Roupas íntimas", click_id="ck+1/2= ?#")


def test_get_sends_every_value_so_that_a_strict_server_reads_it_back_unchanged(fake, client):
    assert client.send(AWKWARD, method="get", **CREDS).outcome == Delivered()
    [seen] = fake.successes()  # the fake reads "+" as a plus and %XX as UTF-8
    assert seen.fields == get_query(AWKWARD, **CREDS)
    assert seen.properties["content_name"] == 'Camisa "azul" & verde = 100% algodão + ção'
    assert seen.fields["clickid"] == "ck+1/2= ?#"


def test_keep_alive_reuses_one_connection(fake, client):
    for _ in range(5):
        assert client.send(EVENT, **CREDS).outcome == Delivered()
    assert len(fake.successes()) == 5
    assert fake.connections == 1


def test_rejected_token(fake, client):
    sent = client.send(EVENT, **dict(CREDS, access_token="wrong"))
    assert sent.outcome == Rejected(10006, "token不合法，请求被拒绝")
    assert sent.outcome.token_refused
    assert fake.successes() == []


def test_rejected_click_id(fake, client):
    fake.fail_next(1, result_code=10005)
    assert client.send(EVENT, **CREDS).outcome == Rejected(10005, "callback字段不合法")
    assert client.send(EVENT, **CREDS).outcome == Delivered()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retry(fake, client, status):
    fake.fail_next(2, status=status)
    assert client.send(EVENT, **CREDS).outcome == RetryLater(f"HTTP {status}")
    assert client.send(EVENT, **CREDS).outcome == RetryLater(f"HTTP {status}")
    assert client.send(EVENT, **CREDS).outcome == Delivered()
    assert len(fake.received) == 3


def test_429_with_retry_after(fake, client):
    fake.fail_next(1, status=429, retry_after=90)
    sent = client.send(EVENT, **CREDS)
    assert sent.outcome == RetryLater("HTTP 429", 90.0) and sent.status == 429


def test_non_json_2xx(fake, client):
    fake.fail_next(1, body=b"<html>maintenance</html>")
    sent = client.send(EVENT, **CREDS)
    assert sent.outcome == RetryLater("HTTP 200 with a body that is not JSON")
    assert sent.body == "<html>maintenance</html>"


@pytest.mark.parametrize("method", ["post", "get"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_is_dead(fake, client, method, status):
    fake.fail_next(1, status=status, body=b"moved", location=fake.base_url + "/elsewhere")
    sent = client.send(EVENT, method=method, **CREDS)
    assert sent.outcome == Dead(f"HTTP {status}: moved") and sent.status == status
    assert len(fake.received) == 1  # the token never goes to the other address
    assert client.send(EVENT, method=method, **CREDS).outcome == Delivered()


def test_an_event_that_cannot_be_written_as_json_is_refused_before_sending(fake, client):
    with pytest.raises(EventError, match="cannot be written as JSON"):
        client.send(replace(EVENT, click_id="ck\ud800"), **CREDS)
    assert fake.received == []


def test_slow_answer_beyond_read_timeout(fake):
    fake.latency = 1.0
    with KwaiClient(fake.base_url, connect_timeout=5.0, read_timeout=0.3, pool_size=4) as client:
        sent = client.send(EVENT, **CREDS)
        assert isinstance(sent.outcome, RetryLater) and "Timeout" in sent.outcome.reason
        assert sent.status is None and sent.body == ""
        fake.latency = 0.0
        assert client.send(EVENT, **CREDS).outcome == Delivered()


def test_connection_dropped(fake, client):
    fake.fail_next(1, drop=True)
    sent = client.send(EVENT, **CREDS)
    assert isinstance(sent.outcome, RetryLater) and "Error" in sent.outcome.reason


def test_connection_refused_names_no_secret(caplog):
    port = free_port()  # nothing listens there
    caplog.set_level(logging.DEBUG)
    with KwaiClient(f"http://127.0.0.1:{port}/log/common", connect_timeout=0.5) as closed:
        for method in ("post", "get"):
            sent = closed.send(EVENT, method=method, **CREDS)
            assert isinstance(sent.outcome, RetryLater)
            assert sent.outcome.reason == "ConnectionError talking to Kwai"
            assert sent.status is None
    assert TOKEN not in caplog.text and "gapi?" not in caplog.text


def test_logs_never_hold_the_token(fake, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.send(EVENT, method="get", **CREDS)
    client.send(EVENT, **dict(CREDS, access_token="other-token-xyz"))
    assert "urllib3" in caplog.text or "kwai" in caplog.text  # something was logged
    assert TOKEN not in caplog.text and "other-token-xyz" not in caplog.text


def test_refused_event_is_not_sent(fake, client):
    with pytest.raises(EventError):
        client.send(EVENT.with_click_id(""), **CREDS)
    with pytest.raises(ValueError):
        client.send(EVENT, method="put", **CREDS)
    assert fake.received == []


# -- through a proxy the environment names ------------------------------------------------
class _Proxy:
    """An HTTP forward proxy on loopback that answers Kwai's success itself, keeping each
    request's line and headers."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                body = b'{"result": 1}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy():
    server = _Proxy()
    yield server
    server.close()


def _without_proxy_variables(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize("method, path", [("post", "/log/common/api"), ("get", "/log/common/gapi?")])
def test_the_proxy_the_environment_names_carries_each_request(proxy, monkeypatch, method, path):
    _without_proxy_variables(monkeypatch)
    user_proxy = proxy.url.replace("http://", "http://ops:p%40ss@")
    monkeypatch.setenv("HTTP_PROXY", user_proxy)
    with KwaiClient("http://kwai.invalid/log/common", connect_timeout=5.0, read_timeout=10.0) as client:
        for _ in range(2):
            assert client.send(EVENT, method=method, **CREDS).outcome == Delivered()
    assert len(proxy.seen) == 2
    verb, target, headers, body = proxy.seen[0]
    # the absolute address, as a forward proxy reads it, with the proxy's credentials
    assert verb == method.upper() and target.startswith("http://kwai.invalid" + path)
    assert headers["Proxy-Authorization"] == "Basic b3BzOnBAc3M="  # ops:p@ss
    if method == "post":
        assert json.loads(body)["clickid"] == "ck+1/2=" and headers["Content-Type"] == "application/json"
    else:
        assert "clickid=ck%2B1%2F2%3D" in target


def test_no_proxy_sends_straight_to_kwai(fake, monkeypatch):
    _without_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with KwaiClient(fake.base_url, connect_timeout=5.0, read_timeout=10.0) as client:
        assert client.send(EVENT, **CREDS).outcome == Delivered()
    assert len(fake.successes()) == 1
    monkeypatch.delenv("NO_PROXY")
    with KwaiClient(fake.base_url, connect_timeout=5.0, read_timeout=10.0) as client:
        sent = client.send(EVENT, **CREDS)
    assert isinstance(sent.outcome, RetryLater) and sent.outcome.reason.endswith("talking to Kwai")
