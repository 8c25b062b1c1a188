"""GET /api/v1/status, console sessions (12 h, logout, attempts limited) and the overview's
id-range search, over the admin API's world on a real database."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kwai_bridge import overview
from kwai_bridge.db import reading
from kwai_bridge.sessions import PER_ACCOUNT
from tests.console_site import ADMIN, PASSWORD, open_site


@pytest.fixture
def site(tmp_path, database_url, kwai):
    opened = open_site(tmp_path, database_url, kwai_url=kwai.base_url)
    opened.kwai = kwai
    yield opened
    opened.close()


def test_status_says_whether_kwai_answered_and_which_stores_are_held(site):
    world = site.world
    first = world.call("GET", "/status").get_json()
    assert (first["kwai"]["reachable"], first["held"]) == (None, ["acme", "globex"])
    assert world.call("GET", "/status", role="own").get_json()["held"] == ["acme"]
    world.call("POST", "/stores/globex/replay")  # its dead and held events, due now
    assert site.dispatch() == {"sent": 2}
    after = world.call("GET", "/status").get_json()
    assert (after["kwai"]["reachable"], after["held"]) == (True, ["acme"])
    world.clock.now += timedelta(minutes=11)
    assert world.call("GET", "/status").get_json()["kwai"]["reachable"] is None
    site.kwai.fail_next(5, drop=True)
    world.call("POST", "/stores/acme/replay")  # both dropped: no answer from Kwai
    site.dispatch()
    assert world.call("GET", "/status").get_json()["kwai"]["reachable"] is False


def _form_token(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def _log_in(client, password=PASSWORD):
    token = _form_token(client.get("/console/login").get_data(as_text=True))
    return client.post("/console/login", data={"email": ADMIN, "password": password, "csrf_token": token})


def test_a_session_ends_after_12_hours_and_at_logout(site):
    client = site.world.app.test_client()
    assert _log_in(client).status_code == 302
    assert client.get("/console/").status_code == 200
    site.world.clock.now += timedelta(hours=12)
    assert client.get("/console/").status_code == 302  # back to the login page
    assert _log_in(client).status_code == 302
    page = client.get("/console/").get_data(as_text=True)
    assert client.post("/console/logout", data={"csrf_token": _form_token(page)}).status_code == 302
    assert client.get("/console/").status_code == 302


def test_login_attempts_are_limited_per_account(site):
    client = site.world.app.test_client()
    answers = [_log_in(client, "wrong password!!").status_code for _ in range(PER_ACCOUNT)]
    assert set(answers) == {401}
    assert _log_in(client).status_code == 429  # even the right password, until the window ends
    site.world.clock.now += timedelta(minutes=15)
    assert _log_in(client).status_code == 302


def test_the_first_event_of_a_window_is_found_by_id(site):
    ids = [i for ids in site.world.event_ids.values() for i in ids]
    with reading(site.runtime.engine) as conn:
        assert overview.first_id_since(conn, site.world.clock.now - timedelta(days=1)) == min(ids)
        assert overview.first_id_since(conn, site.world.clock.now + timedelta(days=1)) is None
