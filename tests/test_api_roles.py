"""The role matrix of the admin API: every route x {no token, revoked token, admin,
merchant of the store, merchant of another store}, each answer's status, no other
tenant's data in any answer, and every answer valid against /api/v1/openapi.json."""
from __future__ import annotations

import json

import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.test import EnvironBuilder

from tests.api_world import MARKS, build_world, new_store

ROLES = ("none", "revoked", "other", "own", "admin")  # the admin last: some of its calls change things
NO_TOKEN = {"none": 401, "revoked": 401}


def expect(admin: int, own: int, other: int) -> dict[str, int]:
    return {**NO_TOKEN, "admin": admin, "own": own, "other": other}


#: (method, path, body, expected status per role). `{event}` and `{delivery}` are acme's.
ROUTES = [
    ("GET", "/openapi.json", None, {"none": 200, "revoked": 200, "admin": 200, "own": 200, "other": 200}),
    ("GET", "/stores", None, expect(200, 200, 200)),
    ("POST", "/stores", new_store(), expect(201, 403, 403)),
    ("GET", "/stores/acme", None, expect(200, 200, 404)),
    ("PATCH", "/stores/acme", {"pixel_id": "pixel-acme-2"}, expect(200, 403, 403)),
    ("GET", "/stores/acme/health", None, expect(200, 200, 404)),
    ("POST", "/stores/acme/replay", {"status": "dead", "result": 10006}, expect(200, 200, 404)),
    ("POST", "/stores/acme/test-event", {"clickid": "test-click-1"}, expect(200, 200, 404)),
    ("POST", "/stores/acme/connect", None, expect(409, 403, 403)),
    ("GET", "/stores/acme/accuracy?since=2026-11-01", None, expect(200, 200, 404)),
    ("GET", "/events", None, expect(200, 200, 200)),
    ("GET", "/events?store=acme", None, expect(200, 200, 200)),
    ("GET", "/events/{event}", None, expect(200, 200, 404)),
    ("POST", "/events/{event}/replay", {}, expect(200, 200, 404)),
    ("GET", "/deliveries", None, expect(200, 200, 200)),
    ("GET", "/deliveries?store=acme", None, expect(200, 200, 200)),
    ("GET", "/deliveries/{delivery}", None, expect(200, 200, 404)),
    ("GET", "/audit", None, expect(200, 403, 403)),
    ("GET", "/status", None, expect(200, 200, 200)),
    ("DELETE", "/stores/acme?force=true", None, expect(200, 403, 403)),
]


@pytest.fixture
def world(tmp_path, database_url, kwai):
    return build_world(tmp_path, database_url, kwai_url=kwai.base_url)


@pytest.mark.parametrize("method,path,body,statuses", ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_role_matrix(world, method, path, body, statuses):
    spec = OpenAPI.from_dict(world.call("GET", "/openapi.json").get_json())
    path = path.format(event=world.event_ids["acme"][0], delivery=world.delivery_ids["acme"])
    got = {}
    for role in ROLES:
        response = world.call(method, path, role=role, body=body)
        got[role] = response.status_code
        # the request again, as the test client's was read to its end
        sent = EnvironBuilder(path=response.request.path, method=method, query_string=response.request.query_string.decode(),
                              headers=dict(response.request.headers), json=body).get_request()
        spec.validate_response(WerkzeugOpenAPIRequest(sent), WerkzeugOpenAPIResponse(response))
        text = json.dumps(response.get_json(), ensure_ascii=False)
        foreign = {"own": MARKS["globex"], "other": MARKS["acme"]}.get(role, ())
        assert not [m for m in foreign if m in text], f"{role}: another tenant's data in {text[:300]}"
        if role == "own" and response.status_code == 200 and "/stores" in path and method == "GET":
            assert "acme" in text
    assert got == statuses


def test_every_route_of_the_blueprint_is_in_the_matrix_and_the_document(world):
    rules = {(m, r.rule.removeprefix("/api/v1")) for r in world.app.url_map.iter_rules()
             if r.rule.startswith("/api/v1/") for m in r.methods - {"HEAD", "OPTIONS"}}
    def template(path: str) -> str:
        return (path.split("?")[0].replace("{event}", "<int:event_id>").replace("{delivery}", "<int:delivery_id>")
                .replace("acme", "<store_id>"))
    assert {(m, template(p)) for m, p, _, _ in ROUTES} == rules
    documented = {(m.upper(), p.replace("{store_id}", "<store_id>").replace("{event_id}", "<int:event_id>")
                   .replace("{delivery_id}", "<int:delivery_id>"))
                  for p, ops in world.call("GET", "/openapi.json").get_json()["paths"].items() for m in ops}
    assert documented == rules
