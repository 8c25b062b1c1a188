"""The fake Kwai refuses malformed requests with Kwai's codes, so a wrong body fails a test."""
from __future__ import annotations

import json
import subprocess
from urllib.parse import quote, urlencode
import sys
import threading
import time
from pathlib import Path
from datetime import datetime, timezone
from decimal import Decimal
from random import Random

import pytest
import requests

from kwai_bridge.kwai.events import Content, KwaiEvent
from kwai_bridge.kwai.wire import get_query_string, post_body
from tests.fake_kwai import ABSURD_RETRY_AFTERS, FakeKwai

PROPS = json.dumps({"event_timestamp": 1714564800123, "content_type": "product",
                    "contents": [{"id": "a", "quantity": 1, "price": 4.99}]})
VALID = {
    "access_token": "tok", "clickid": "ck", "event_name": "EVENT_PURCHASE", "pixelId": "px",
    "testFlag": False, "trackFlag": True, "is_attributed": 1, "mmpcode": "PL",
    "pixelSdkVersion": "9.9.9", "properties": PROPS, "third_party": "shopify",
    "currency": "USD", "value": "10.28",
}
DROP = object()


def with_(**changes):
    body = dict(VALID)
    for name, item in changes.items():
        if item is DROP:
            body.pop(name)
        else:
            body[name] = item
    return body


def props(**changes):
    data = json.loads(PROPS)
    data.update(changes)
    return json.dumps(data)


POST_CASES = [
    ("valid", VALID, 1),
    ("no currency nor value", with_(currency=DROP, value=DROP), 1),
    ("no properties", with_(properties=DROP), 1),
    *[(f"missing {name}", with_(**{name: DROP}), 10001)
      for name in ("access_token", "clickid", "event_name", "pixelId", "testFlag", "trackFlag",
                   "is_attributed", "mmpcode", "pixelSdkVersion", "third_party")],
    ("empty clickid", with_(clickid=""), 10001),
    ("null pixelId", with_(pixelId=None), 10001),
    ("manual's curl spelling pixelid", with_(pixelId=DROP, pixelid="px"), 10001),
    ("manual's curl spelling impcode", with_(mmpcode=DROP, impcode="PL"), 10001),
    ("value without currency", with_(currency=DROP), 10001),
    ("currency without value", with_(value=DROP), 10001),
    ("unknown field", with_(trackerFlag=True), 10002),
    ("testFlag true", with_(testFlag=True), 10002),
    ("testFlag as text", with_(testFlag="false"), 10002),
    ("trackFlag as text", with_(trackFlag="true"), 10002),
    ("is_attributed text", with_(is_attributed="1"), 10002),
    ("is_attributed true", with_(is_attributed=True), 10002),
    ("is_attributed 0", with_(is_attributed=0), 10002),
    ("mmpcode wrong", with_(mmpcode="XX"), 10002),
    ("pixelSdkVersion wrong", with_(pixelSdkVersion="1.0"), 10002),
    ("third_party unknown", with_(third_party="magento"), 10002),
    ("value a number", with_(value=10.28), 10002),
    ("value not decimal", with_(value="10,28"), 10002),
    ("currency EUR", with_(currency="EUR"), 10002),
    ("clickid a number", with_(clickid=123), 10002),
    ("properties an object", with_(properties={"event_timestamp": 1714564800123}), 10002),
    ("properties not JSON", with_(properties="{nope"), 10002),
    ("properties a list", with_(properties="[]"), 10002),
    ("properties without timestamp", with_(properties="{}"), 10001),
    ("timestamp in seconds", with_(properties=props(event_timestamp=1714564800)), 10002),
    ("timestamp as text", with_(properties=props(event_timestamp="1714564800123")), 10002),
    ("price as text", with_(properties=props(contents=[{"id": "a", "quantity": 1, "price": "4.99"}])),
     10002),
    ("quantity as text", with_(properties=props(contents=[{"id": "a", "quantity": "1"}])), 10002),
    ("content id a number", with_(properties=props(contents=[{"id": 7, "quantity": 1}])), 10002),
    ("contents an object", with_(properties=props(contents={"id": "a"})), 10002),
    ("content_type wrong", with_(properties=props(content_type="sku")), 10002),
    ("bad event name", with_(event_name="EVENT_CUSTOM"), 10007),
    ("lower-case event name", with_(event_name="event_purchase"), 10007),
]


@pytest.fixture(scope="module")
def fake():
    with FakeKwai() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(fake):
    fake.reset()
    fake.latency = 0.0
    fake.accepted_tokens = None


def post(fake, body, **kwargs):
    return requests.post(fake.base_url + "/api", json=body, timeout=5, **kwargs)


def as_query(body):
    return {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in body.items()}


@pytest.mark.parametrize("name, body, result", POST_CASES, ids=[c[0] for c in POST_CASES])
def test_post_checks(fake, name, body, result):
    answer = post(fake, body)
    assert answer.status_code == 200
    assert answer.json()["result"] == result
    if result != 1:
        assert answer.json()["error_msg"]
    assert [r.result for r in fake.received] == [result]
    assert len(fake.successes()) == (result == 1)


def test_missing_parameter_message_names_it(fake):
    answer = post(fake, with_(clickid=DROP)).json()
    assert answer == {"result": 10001, "error_msg": "缺少参数clickid"}


GET_CASES = [
    ("valid", as_query(VALID), 1),
    ("missing clickid", as_query(with_(clickid=DROP)), 10001),
    ("testFlag true", dict(as_query(VALID), testFlag="true"), 10002),
    ("testFlag Python spelling", dict(as_query(VALID), testFlag="False"), 10002),
    ("trackFlag yes", dict(as_query(VALID), trackFlag="yes"), 10002),
    ("is_attributed 0", dict(as_query(VALID), is_attributed="0"), 10002),
    ("value not decimal", dict(as_query(VALID), value="ten"), 10002),
    ("bad event", dict(as_query(VALID), event_name="EVENT_X"), 10007),
]


def get(fake, query: str) -> requests.Response:
    return requests.get(f"{fake.base_url}/gapi?{query}", timeout=5)


def percent(query: dict) -> str:
    """Every name and value percent-encoded, a space as %20."""
    return urlencode(query, quote_via=quote, safe="")


@pytest.mark.parametrize("name, query, result", GET_CASES, ids=[c[0] for c in GET_CASES])
def test_get_checks(fake, name, query, result):
    answer = get(fake, percent(query))
    assert answer.json()["result"] == result
    if result == 1:
        assert fake.received[0].fields["clickid"] == "ck"


def test_repeated_query_parameter_refused(fake):
    assert get(fake, percent(as_query(VALID)) + "&clickid=again").json()["result"] == 10002


def test_a_plus_in_a_query_is_a_plus_as_a_strict_server_reads_it(fake):
    query = percent(as_query(VALID)).replace("clickid=ck", "clickid=c+k%20")
    assert get(fake, query).json()["result"] == 1
    assert fake.received[0].fields["clickid"] == "c+k "
    # form encoding writes the spaces of the properties' JSON as "+": not JSON any more
    assert get(fake, urlencode(as_query(VALID))).json() == {"result": 10002, "error_msg": "参数properties类型错误"}


@pytest.mark.parametrize(
    "data, headers",
    [(b"not json", {"Content-Type": "application/json"}),
     (b"[1, 2]", {"Content-Type": "application/json"}),
     (json.dumps(VALID).encode(), {"Content-Type": "application/x-www-form-urlencoded"})],
)
def test_post_body_must_be_a_json_object(fake, data, headers):
    answer = requests.post(fake.base_url + "/api", data=data, headers=headers, timeout=5)
    assert answer.json()["result"] == 10002


def test_token_check(fake):
    fake.accepted_tokens = {"good"}
    assert post(fake, with_(access_token="bad")).json()["result"] == 10006
    assert post(fake, with_(access_token="good")).json()["result"] == 1


def test_wrong_paths_are_404(fake):
    assert requests.post(fake.base_url + "/gapi", json=VALID, timeout=5).status_code == 404
    assert requests.get(fake.base_url + "/api", timeout=5).status_code == 404


def test_fail_next_then_normal(fake):
    fake.fail_next(2, status=503, retry_after=30)
    fake.fail_next(1, result_code=10005)
    first, second = post(fake, VALID), post(fake, VALID)
    assert (first.status_code, first.headers["Retry-After"]) == (503, "30")
    assert second.status_code == 503
    assert post(fake, VALID).json() == {"result": 10005, "error_msg": "callback字段不合法"}
    assert post(fake, VALID).json() == {"result": 1}
    assert [r.result for r in fake.received] == [None, None, 10005, 1]


def test_our_wire_format_passes_the_fake(fake):
    event = KwaiEvent("EVENT_PURCHASE", datetime(2024, 5, 1, tzinfo=timezone.utc), "shopline",
                      "order:1", click_id="a+b/c=", value=Decimal("1.50"), currency="IDR",
                      contents=(Content("x", 2, Decimal("0.75")),), content_type="product")
    creds = dict(pixel_id="p", access_token="t", track_flag=True)
    assert post(fake, post_body(event, **creds)).json() == {"result": 1}
    assert get(fake, get_query_string(event, **creds)).json() == {"result": 1}
    assert [r.fields["clickid"] for r in fake.successes()] == ["a+b/c=", "a+b/c="]
    assert fake.successes()[1].properties["contents"] == [{"id": "x", "quantity": 2, "price": 0.75}]


def test_concurrent_requests_are_all_recorded(fake):
    def burst():
        with requests.Session() as session:
            for _ in range(25):
                session.post(fake.base_url + "/api", json=VALID, timeout=5)

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.wait_for(200, timeout=5)
    assert len(fake.successes()) == 200
    assert not fake.wait_for(201, timeout=0.05)


def test_runs_on_its_own():
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_kwai", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/log/common")
        assert requests.post(base_url + "/api", json=VALID, timeout=5).json() == {"result": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_chaos_fails_its_share_with_errors_and_absurd_retry_afters(fake):
    fake.chaos(0.5, rng=Random(4), kinds=["5xx", "429"])  # timeouts: the next test
    with requests.Session() as session:
        answers = [session.post(fake.base_url + "/api", json=VALID, timeout=5) for _ in range(120)]
    failed = [a for a in answers if a.status_code != 200]
    assert 30 < len(failed) == sum(fake.chaos_counts.values()) < 90
    assert fake.chaos_counts["5xx"] and fake.chaos_counts["429"]
    assert {a.status_code for a in failed} <= {429, 500, 502, 503, 504}
    assert {a.headers["Retry-After"] for a in failed if a.status_code == 429} <= set(ABSURD_RETRY_AFTERS)
    assert len(fake.successes()) == len(answers) - len(failed)
    fake.chaos(0, rng=Random(4))
    assert post(fake, VALID).json() == {"result": 1}


def test_chaos_timeout_holds_the_request_until_the_client_gives_up(fake):
    fake.chaos(1.0, rng=Random(1), kinds=["timeout"])
    with pytest.raises(requests.ReadTimeout):
        requests.post(fake.base_url + "/api", json=VALID, timeout=(5, 0.3))
    deadline = time.monotonic() + 10
    while not fake.received and time.monotonic() < deadline:
        time.sleep(0.01)
    (request,) = fake.received
    assert not request.answered and request.result is None and fake.successes() == []


def test_a_client_that_gave_up_before_the_answer_got_no_delivery(fake):
    fake.latency = 0.5
    with pytest.raises(requests.ReadTimeout):
        requests.post(fake.base_url + "/api", json=VALID, timeout=(5, 0.1))
    deadline = time.monotonic() + 10
    while not fake.received and time.monotonic() < deadline:
        time.sleep(0.01)
    (request,) = fake.received
    assert (request.answered, request.result) == (False, None)
    assert not fake.wait_for(1, timeout=0.05)


def test_rate_limit_refuses_beyond_the_burst_at_once_then_lifts(fake):
    fake.latency = 3.0  # a refusal is answered without it (a read timeout would fail below)
    fake.rate_limit(0.001, burst=2, retry_after=1)  # a token every 1,000 s: none comes back
    fake.latency = 0.0
    answers = [post(fake, VALID) for _ in range(2)]
    fake.latency = 3.0
    refused = requests.post(fake.base_url + "/api", json=VALID, timeout=(5, 2))
    assert [a.json() for a in answers] == [{"result": 1}, {"result": 1}]
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert [r.status for r in fake.received] == [200, 200, 429]
    assert fake.received[2].fields["clickid"] == "ck", "the refused request is recorded as sent"
    fake.latency = 0.0
    fake.rate_limit(None)
    assert post(fake, VALID).json() == {"result": 1}
    with pytest.raises(ValueError):
        fake.rate_limit(0)
