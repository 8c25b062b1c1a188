"""The test event: one send with trackFlag true against the fake Kwai over loopback, and
what each of Kwai's answers becomes for the person who asked."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kwai_bridge.config import StoreConfig
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.kwai.events import EventError
from kwai_bridge.testevent import TestEventResult, send_test_event
from tests.serving import free_port

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def store(**overrides) -> StoreConfig:
    fields = dict(id="acme", platform="shopify", shop="acme.myshopify.com", webhook_secrets=("s",),
                  pixel_id="pixel-777", access_token="token-acme-test-event")
    fields.update(overrides)
    return StoreConfig(**fields)


def send(base_url: str, config: StoreConfig | None = None, **kwargs) -> TestEventResult:
    with KwaiClient(base_url, connect_timeout=5, read_timeout=5) as client:
        return send_test_event(client, config or store(), clickid=kwargs.get("clickid", "TEST-CLICK"),
                               event_name=kwargs.get("event_name", "EVENT_PURCHASE"), now=NOW)


@pytest.mark.parametrize("method, path", [("post", "/api"), ("get", "/gapi")])
def test_accepted_event_goes_with_track_flag_and_the_store_platform(kwai, method, path):
    found = send(kwai.base_url, store(send_method=method, platform="woocommerce", shop="https://woo.example"))
    assert found == TestEventResult(ok=True, result=1, http_status=200, hint=None, endpoint=kwai.base_url + path,
                                    message="Kwai accepted the test event: it shows in the Test Events tab")
    fields = kwai.received[-1].fields
    assert (kwai.received[-1].path, fields["clickid"], fields["trackFlag"], fields["third_party"],
            fields["pixelId"]) == ("/log/common" + path, "TEST-CLICK", True if method == "post" else "true", "woocommerce",
                                   "pixel-777")
    assert found.as_json()["endpoint"] == kwai.base_url + path


@pytest.mark.parametrize("code, hint", [
    (10006, "check the access token of pixel pixel-777 (store acme)"),
    (10005, "copy the test click id again from the Test Events tab"),
    (10007, "use one of Kwai's 32 event names"),
    (10001, "a required parameter is missing"),
    (10002, "a parameter has the wrong type"),
])
def test_each_refusal_has_the_manuals_hint(kwai, code, hint):
    kwai.fail_next(1, result_code=code)
    found = send(kwai.base_url)
    assert (found.ok, found.result, found.http_status) == (False, code, 200)
    assert found.message.startswith(f"Kwai refused the event with result {code}: ")
    assert hint in found.hint
    assert "token-acme-test-event" not in repr(found)


def test_a_token_kwai_does_not_accept_names_the_pixel():
    from tests.fake_kwai import FakeKwai

    with FakeKwai(accepted_tokens={"the-right-one"}) as kwai:
        found = send(kwai.base_url)
    assert (found.ok, found.result) == (False, 10006)
    assert found.hint.startswith("check the access token of pixel pixel-777 (store acme)")


def test_nothing_listening_names_the_endpoint_tried():
    base = f"http://127.0.0.1:{free_port()}/log/common"
    found = send(base)
    assert (found.ok, found.result, found.http_status) == (False, None, None)
    assert found.endpoint == base + "/api"
    assert f"nothing answered at {base}/api" in found.hint and "KWAI_BRIDGE_KWAI_ENDPOINT" in found.hint
    assert "ConnectionError" in found.message


def test_unavailable_and_wrong_address(kwai):
    kwai.fail_next(1, status=503)
    busy = send(kwai.base_url)
    assert (busy.ok, busy.http_status, busy.result) == (False, 503, None)
    assert "try again in a few minutes" in busy.hint and kwai.base_url + "/api" in busy.hint
    wrong = send(kwai.base_url + "/elsewhere")
    assert (wrong.ok, wrong.http_status) == (False, 404)
    assert f"{kwai.base_url}/elsewhere/api did not answer as Kwai's Event API does" in wrong.hint


def test_an_unknown_result_is_reported_as_kwai_gave_it(kwai):
    kwai.fail_next(1, body=b'{"result": 10099, "error_msg": "new"}')
    found = send(kwai.base_url)
    assert (found.ok, found.result, found.hint) == (False, 10099, None)
    assert "10099" in found.message


@pytest.mark.parametrize("kwargs", [{"event_name": "EVENT_NOPE"}, {"clickid": ""}])
def test_an_event_kwai_would_refuse_is_not_sent(kwai, kwargs):
    with pytest.raises(EventError):
        send(kwai.base_url, **kwargs)
    assert kwai.received == []
