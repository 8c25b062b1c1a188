"""The admin API's stores: create, read, change (merged, checked again), delete; secrets
write-only; errors as {"errors": {field: [messages]}}; every change audited; replays."""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from kwai_bridge.accounts import Accounts
from kwai_bridge.db import EventStatus
from tests.api_world import NOW, build_world, new_store
from tests.conftest import fixture_bytes
from tests.fake_kwai import FakeKwai
from tests.signing import headers_for

SECRET, TOKEN = "newco-webhook-secret-0001", "newco-access-token-9876"


@pytest.fixture
def world(tmp_path, database_url):
    return build_world(tmp_path, database_url)


def test_without_a_valid_token_the_answer_is_401_with_a_bearer_challenge(world):
    for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer kwb_not-a-token"}, {"Authorization": f"Bearer {world.tokens['revoked']}"}):
        answer = world.client.get("/api/v1/stores", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(answer.get_json()) == {"error"}
    assert world.client.get("/api/v1/stores", headers={"Authorization": f"bearer {world.tokens['admin']}"}).status_code == 200


def test_a_store_created_by_the_api_shows_its_secrets_as_hints_and_takes_webhooks(world):
    created = world.call("POST", "/stores", body=new_store())
    assert created.status_code == 201 and created.headers["Location"] == "/api/v1/stores/newco"
    store = created.get_json()
    assert store["webhook_secrets"] == ["…0001"] and store["access_token"] == "…9876"
    assert store["version"] == 1 and store["webhook_url"] == "http://localhost/webhooks/shopline/newco"
    for answer in (created, world.call("GET", "/stores/newco"), world.call("GET", "/stores")):
        assert SECRET not in answer.get_data(as_text=True) and TOKEN not in answer.get_data(as_text=True)
    assert world.call("POST", "/stores", body=new_store()).status_code == 409
    assert world.call("POST", "/stores", body=new_store("other", shop="newco.myshopline.com")).status_code == 409  # the same shop

    shop = "newco.myshopline.com"
    body = fixture_bytes("shopline/shopline_orders_create.DERIVED_FROM_SDK.json", shop=shop)
    answer = world.client.post("/webhooks/shopline/newco", data=body,
                               headers=headers_for("shopline", "orders/create", shop=shop, secret=SECRET, body=body))
    assert answer.status_code == 200, answer.get_data(as_text=True)


@pytest.mark.parametrize("body,errors", [
    ({**new_store(), "pixelid": "1"}, {"pixelid": ["Unknown field."]}),
    ({**new_store(), "pixel_id": 123}, {"pixel_id": ['must be a non-empty string (quote numbers: pixel_id = "123")']}),
    ({"id": "x"}, {f: ["is required"] for f in ("platform", "shop", "webhook_secrets", "pixel_id", "access_token")}),
    ({**new_store(), "platform": "magento", "click_window_days": 0},
     {"platform": ["must be one of 'shopify', 'shopline', 'woocommerce', not 'magento'"], "click_window_days": ["must be a whole number from 1 to 365"]}),
    ([1, 2], {"_schema": ["the body must be a JSON object"]}),
])
def test_a_wrong_store_is_refused_naming_each_field(world, body, errors, caplog):
    caplog.set_level(logging.INFO)
    answer = world.call("POST", "/stores", body=body)
    assert (answer.status_code, answer.get_json()) == (400, {"errors": errors})
    assert world.call("GET", "/stores/newco").status_code == 404
    assert SECRET not in caplog.text and TOKEN not in caplog.text


def test_not_json_is_refused(world):
    answer = world.client.post("/api/v1/stores", data="{not json", content_type="application/json",
                               headers={"Authorization": f"Bearer {world.tokens['admin']}"})
    assert (answer.status_code, answer.get_json()) == (400, {"errors": {"_schema": ["the body must be a JSON object"]}})


def test_patch_merges_into_the_current_fields_and_checks_the_whole(world):
    before = world.call("GET", "/stores/acme").get_json()
    world.clock.now = NOW + timedelta(minutes=1)
    changed = world.call("PATCH", "/stores/acme", body={"pixel_id": "pixel-acme-2", "access_token": "rotated-token-4321"})
    assert changed.status_code == 200
    after = changed.get_json()
    assert (after["pixel_id"], after["access_token"], after["version"]) == ("pixel-acme-2", "…4321", 2)
    assert {k: v for k, v in after.items() if k not in ("pixel_id", "access_token", "version", "updated_at")} == \
        {k: v for k, v in before.items() if k not in ("pixel_id", "access_token", "version", "updated_at")}
    served = world.runtime.registry.stores.get("acme")
    assert (served.pixel_id, served.access_token) == ("pixel-acme-2", "rotated-token-4321")

    for body, errors in (({"value": "gross"}, {"value": ["must be one of 'total', 'subtotal', not 'gross'"]}),
                         ({"id": "renamed"}, {"id": ["a store's id cannot change (create another store)"]}),
                         ({"secret": "x"}, {"secret": ["Unknown field."]})):
        answer = world.call("PATCH", "/stores/acme", body=body)
        assert (answer.status_code, answer.get_json()) == (400, {"errors": errors})
    assert world.call("GET", "/stores/acme").get_json()["version"] == 2
    assert world.call("PATCH", "/stores/nosuch", body={"pixel_id": "x"}).status_code == 404


def test_delete_is_refused_while_events_wait_unless_forced(world):
    refused = world.call("DELETE", "/stores/acme")
    assert refused.status_code == 409 and "waiting" in refused.get_json()["error"]
    assert world.call("DELETE", "/stores/acme?force=maybe").status_code == 400
    deleted = world.call("DELETE", "/stores/acme?force=true")
    assert deleted.get_json() == {"deleted": "acme", "waiting_events": 2}  # the pending and the held one
    assert world.call("GET", "/stores/acme").status_code == 404
    assert world.call("DELETE", "/stores/acme").status_code == 404
    assert world.runtime.registry.stores.get("acme") is None


def test_every_change_through_the_api_is_audited_with_its_actor(world):
    world.call("POST", "/stores", body=new_store())
    world.call("PATCH", "/stores/newco", body={"test_mode": True})
    world.call("DELETE", "/stores/newco")
    first = world.call("GET", "/audit?limit=2").get_json()
    assert [(e["actor"], e["action"], e["target"]) for e in first["items"]] == [
        ("ops@agency.example", "store.delete", "store:newco"), ("ops@agency.example", "store.update", "store:newco")]
    assert first["items"][1]["detail"] == {"fields": ["test_mode"]}
    second = world.call("GET", f"/audit?limit=2&cursor={first['next_cursor']}").get_json()
    assert second["items"][0]["action"] == "store.create"
    assert [e["action"] for e in world.call("GET", "/audit?target=store:newco").get_json()["items"]] == [
        "store.delete", "store.update", "store.create"]
    assert world.call("GET", "/audit?limit=0").get_json() == {"errors": {"limit": [
        "Must be greater than or equal to 1 and less than or equal to 500."]}}
    assert SECRET not in world.call("GET", "/audit?limit=500").get_data(as_text=True)


def test_a_merchant_sees_only_their_stores_and_cannot_change_them(world):
    assert [s["id"] for s in world.call("GET", "/stores", role="own").get_json()["items"]] == ["acme"]
    assert [s["id"] for s in world.call("GET", "/stores", role="admin").get_json()["items"]] == ["acme", "globex"]
    assert world.call("PATCH", "/stores/acme", role="own", body={"pixel_id": "x"}).status_code == 403
    assert world.call("POST", "/stores", role="own", body=new_store()).status_code == 403
    Accounts(world.runtime.engine).set_stores("ann@acme.example", ["acme", "globex"], known=["acme", "globex"],
                                               actor="test", now=NOW)
    assert [s["id"] for s in world.call("GET", "/stores", role="own").get_json()["items"]] == ["acme", "globex"]


@pytest.mark.parametrize("query,field", [("limit=501", "limit"), ("status=lost", "status"), ("since=yesterday", "since"),
                                         ("colour=red", "colour")])
def test_event_list_queries_are_checked(world, query, field):
    answer = world.call("GET", f"/events?{query}")
    assert answer.status_code == 400 and list(answer.get_json()["errors"]) == [field]


def test_a_cursor_not_ours_is_refused(world):
    answer = world.call("GET", "/events?cursor=%%%")
    assert answer.status_code == 400 and list(answer.get_json()["errors"]) == ["cursor"]


def test_replays_put_events_back_due_now_count_them_and_are_audited(world):
    dead, held, pending = world.event_ids["acme"]
    world.clock.now = NOW + timedelta(hours=1)
    assert world.call("POST", "/stores/acme/replay", role="own", body={"status": "held"}).get_json() == {"replayed": 1}
    assert world.call("POST", "/stores/acme/replay", body={"status": "sent"}).status_code == 400
    assert world.call("POST", "/stores/acme/replay", body={"result": 10006}).get_json() == {"replayed": 1}  # the dead
    assert world.call("POST", "/stores/acme/replay").get_json() == {"replayed": 0}
    assert world.call("POST", f"/events/{pending}/replay", role="own").get_json() == {"replayed": 1}  # retry now
    rows = {r.id: r for r in world.runtime.outbox.list_events(store_id="acme")}
    assert all(rows[i].status == EventStatus.PENDING and rows[i].next_attempt_at == world.clock.now
               for i in (dead, held, pending))
    trail = world.call("GET", "/audit?limit=4").get_json()["items"]
    assert [(e["actor"], e["target"], e["detail"]) for e in trail] == [
        ("ann@acme.example", f"event:{pending}", {"replayed": 1}),
        ("ops@agency.example", "store:acme", {"replayed": 0}),
        ("ops@agency.example", "store:acme", {"result": 10006, "replayed": 1}),
        ("ann@acme.example", "store:acme", {"status": "held", "replayed": 1}),
    ]


def test_a_test_event_answers_kwai_s_result_and_a_hint_when_refused(tmp_path, database_url):
    with FakeKwai(accepted_tokens={"token-woocommerce"}) as kwai:
        world = build_world(tmp_path, database_url, kwai_url=kwai.base_url)
        accepted = world.call("POST", "/stores/globex/test-event", body={"clickid": "test-click"}).get_json()
        assert (accepted["ok"], accepted["result"], accepted["hint"]) == (True, 1, None)
        refused = world.call("POST", "/stores/acme/test-event", role="own",
                             body={"clickid": "test-click", "event_name": "EVENT_ADD_TO_CART"}).get_json()
        assert (refused["ok"], refused["result"]) == (False, 10006)
        assert "pixel-shopify" in refused["hint"] and refused["endpoint"].startswith(kwai.base_url)
        assert "token-shopify" not in json.dumps(refused)
        sent = [r.fields["event_name"] for r in kwai.received]
        assert sent == ["EVENT_PURCHASE", "EVENT_ADD_TO_CART"]
    assert world.call("POST", "/stores/acme/test-event", body={"clickid": ""}).status_code == 400
    assert world.call("POST", "/stores/acme/test-event", body={"clickid": "x", "event_name": "BUY"}).status_code == 400


def test_an_event_s_detail_masks_the_access_token(world):
    detail = world.call("GET", f"/events/{world.event_ids['acme'][0]}", role="own")
    assert detail.status_code == 200
    body = detail.get_json()
    assert body["sent_body"]["access_token"] == "…pify" and "token-shopify" not in detail.get_data(as_text=True)
    assert body["delivery"]["id"] == world.delivery_ids["acme"]
