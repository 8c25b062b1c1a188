"""One test event sent at once with `trackFlag: true`, and Kwai's answer in plain words.

`kwai-bridge send-test-event` and `POST /api/v1/stores/<id>/test-event` both call
`send_test_event`; what they show comes from `TestEventResult`. The hints restate Kwai's
manual (spec/kwai-event-api.md, "Response"); none holds the access token.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from kwai_bridge.config import StoreConfig
from kwai_bridge.kwai.client import (
    GET_PATH, POST_PATH, TOKEN_REFUSED, Dead, Delivered, KwaiClient, Rejected, RetryLater, SendResult,
)
from kwai_bridge.kwai.events import KwaiEvent

log = logging.getLogger(__name__)

#: What each of Kwai's refusals means and what to do, per the manual; 10006 names the pixel.
_REFUSALS = {
    10001: "Kwai says a required parameter is missing: the bridge sent an incomplete event; "
           "report it with Kwai's message",
    10002: "Kwai says a parameter has the wrong type: the bridge sent a malformed event; "
           "report it with Kwai's message",
    10005: "the click id failed Kwai's verification: copy the test click id again from the Test "
           "Events tab (it changes each time that page is reloaded)",
    10007: "the event name failed Kwai's verification: use one of Kwai's 32 event names, such as "
           "EVENT_PURCHASE",
}


@dataclass(frozen=True)
class TestEventResult:
    """What Kwai made of a test event: `ok` when it answered result 1."""

    __test__ = False  # not a pytest test class, whatever its name

    ok: bool
    result: int | None
    http_status: int | None
    message: str
    hint: str | None
    endpoint: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def endpoint_of(client: KwaiClient, store: StoreConfig) -> str:
    """The address a store's events go to through `client` (POST or GET, as the store says)."""
    return client.base_url + (GET_PATH if store.send_method.lower() == "get" else POST_PATH)


def send_test_event(client: KwaiClient, store: StoreConfig, *, clickid: str, event_name: str,
                    now: datetime) -> TestEventResult:
    """Send one `event_name` for `clickid` with trackFlag true, now; EventError (nothing
    sent) for an event name Kwai does not know or an empty click id."""
    event = KwaiEvent(event_name=event_name, event_time=now, third_party=store.platform,
                      idempotency_key=f"test-event:{store.id}:{now.timestamp():.6f}", click_id=clickid)
    sent = client.send(event, pixel_id=store.pixel_id, access_token=store.access_token, track_flag=True,
                       method=store.send_method)
    found = read_answer(sent, store=store, endpoint=endpoint_of(client, store))
    log.info("test event for store %s (%s): ok=%s result=%s HTTP %s", store.id, event_name, found.ok,
             found.result, found.http_status)
    return found


def read_answer(sent: SendResult, *, store: StoreConfig, endpoint: str) -> TestEventResult:
    """Kwai's answer to a test event, with a hint when it refused (pure)."""
    outcome = sent.outcome
    result = _result_code(sent.body)

    def answer(message: str, hint: str | None, *, ok: bool = False) -> TestEventResult:
        return TestEventResult(ok=ok, result=result, http_status=sent.status, message=message, hint=hint,
                               endpoint=endpoint)

    if isinstance(outcome, Delivered):
        return answer("Kwai accepted the test event: it shows in the Test Events tab", None, ok=True)
    if isinstance(outcome, Rejected):
        message = f"Kwai refused the event with result {outcome.code}: {outcome.message or '(no message)'}"
        if outcome.code == TOKEN_REFUSED:
            return answer(message, f"check the access token of pixel {store.pixel_id} (store {store.id}): it must "
                                   "be the one Kwai for Business shows in that pixel's Event API settings")
        return answer(message, _REFUSALS.get(outcome.code))
    if isinstance(outcome, RetryLater) and sent.status is None:
        return answer(f"no answer from Kwai ({outcome.reason})",
                      f"nothing answered at {endpoint} (connection refused or timed out): check "
                      "KWAI_BRIDGE_KWAI_ENDPOINT and that this machine can reach it")
    if isinstance(outcome, RetryLater):
        return answer(f"Kwai is unavailable for now ({outcome.reason})",
                      f"{endpoint} answered {outcome.reason}: try again in a few minutes")
    assert isinstance(outcome, Dead)
    if result is None:
        return answer(f"an answer the bridge cannot read: {outcome.reason}",
                      f"{endpoint} did not answer as Kwai's Event API does: check KWAI_BRIDGE_KWAI_ENDPOINT "
                      "(Kwai's is https://www.adsnebula.com/log/common)")
    return answer(f"Kwai answered a result its manual does not list: {outcome.reason}", None)


def _result_code(body: str) -> int | None:
    try:
        result = json.loads(body).get("result")
    except (ValueError, AttributeError):
        return None
    if isinstance(result, str) and result.strip().isdigit():
        return int(result.strip())
    return result if isinstance(result, int) and not isinstance(result, bool) else None


__all__ = ["TestEventResult", "endpoint_of", "read_answer", "send_test_event"]
