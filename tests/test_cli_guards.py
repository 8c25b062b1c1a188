"""What the command line refuses: a store it does not know, a database it would have to
create, and (for commands that only read) a key it does not need."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kwai_bridge.catalog import Catalog
from kwai_bridge.db import make_engine
from kwai_bridge.sealing import make_sealer
from tests.fake_kwai import FakeKwai
from tests.serving import bridge_env, free_port, run_cli, store_entry, write_stores
from tests.test_cli import env, invoke, outbox_for, queue  # noqa: F401 (env is a fixture)

#: Every command that takes --store, with the other arguments it needs.
STORE_COMMANDS = [
    ["events", "list"],
    ["events", "replay"],
    ["deliveries", "reprocess"],
    ["attribution", "report"],
    ["privacy", "export", "--customer", "42"],
    ["send-test-event", "--clickid", "TEST-CLICK"],
]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_an_unknown_store_is_refused_with_the_known_ones(env, command):
    with FakeKwai() as kwai:
        result = invoke({**env, "KWAI_BRIDGE_KWAI_ENDPOINT": kwai.base_url}, *command, "--store", "nosuch")
        assert kwai.received == []
    assert result.exit_code == 2, result.output
    assert "no store 'nosuch'; known: acme, woo" in result.output


def test_a_removed_store_whose_events_remain_is_still_known(env):
    outbox = outbox_for(env["KWAI_BRIDGE_DATABASE_URL"])
    queue(outbox, "order:1:EVENT_PURCHASE")
    engine = make_engine(env["KWAI_BRIDGE_DATABASE_URL"])
    Catalog(engine, sealer=make_sealer(os.environ["KWAI_BRIDGE_SECRET_KEYS"], database_url="")).delete("acme", actor="test", now=datetime.now(timezone.utc), force=True)
    listed = invoke(env, "events", "list", "--store", "acme")
    assert listed.exit_code == 0 and "pending 1" in listed.output
    exported = invoke(env, "privacy", "export", "--store", "acme", "--order", "1")
    assert exported.exit_code == 0, exported.output
    gone = invoke(env, "send-test-event", "--store", "acme", "--clickid", "X")
    assert gone.exit_code == 1 and "store 'acme' is no longer configured" in gone.output


def test_many_stores_are_not_all_listed(env, tmp_path):
    many = write_stores(tmp_path / "many.toml", [store_entry("shopify", f"s{i:02d}", shop=f"s{i:02d}.myshopify.com") for i in range(25)])
    assert invoke(env, "stores", "import", str(many)).exit_code == 0
    result = invoke(env, "events", "list", "--store", "nosuch")
    assert result.exit_code == 2
    assert "known: acme, s00, s01" in result.output and "(27 in all: `kwai-bridge stores list`)" in result.output


#: Every command that opens the database, except `migrate` and `serve`, which create it.
DATABASE_COMMANDS = [
    *([*command, "--store", "acme"] for command in STORE_COMMANDS),
    ["attribution", "prune"],
    ["stores", "import", "stores.toml"],
    ["stores", "export"],
    ["stores", "list"],
    ["secrets", "rotate"],
    ["worker", "--once"],
]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_command_but_migrate_and_serve_creates_a_database(tmp_path, monkeypatch, command):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_stores(elsewhere / "stores.toml", [store_entry("shopify", "acme")])
    monkeypatch.chdir(elsewhere)
    result = invoke({"KWAI_BRIDGE_DATABASE_URL": None, "KWAI_BRIDGE_STORES": None}, *command)
    assert result.exit_code == 1, result.output
    assert f"no database at {elsewhere / 'kwai-bridge.db'}: KWAI_BRIDGE_DATABASE_URL chooses it" in result.output
    assert sorted(os.listdir(elsewhere)) == ["stores.toml"], "nothing created: no database, no key file"


def test_a_command_run_from_another_folder_names_the_file_it_looked_for(tmp_path, sqlite_url):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = bridge_env(database_url="sqlite:///kwai-bridge.db", stores=Path("unused.toml"), STORES="")
    assert run_cli(env, "migrate", cwd=tmp_path).returncode == 0
    result = run_cli(env, "events", "list", cwd=elsewhere)
    assert result.returncode == 1
    assert f"no database at {elsewhere / 'kwai-bridge.db'}: KWAI_BRIDGE_DATABASE_URL chooses it" in result.stderr
    assert os.listdir(elsewhere) == []
    assert run_cli(env, "events", "list", cwd=tmp_path).returncode == 0


READ_ONLY = [
    ["events", "list", "--store", "acme"],
    ["attribution", "report", "--store", "acme"],
    ["privacy", "export", "--store", "acme", "--customer", "42"],
    ["stores", "list"],
    ["stores", "export"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_read_only_commands_need_no_key(env, command):
    # On PostgreSQL a missing key is an error; on SQLite it would make a key file.
    result = invoke({**env, "KWAI_BRIDGE_SECRET_KEYS": ""}, *command)
    assert result.exit_code == 0, result.output
    database = env["KWAI_BRIDGE_DATABASE_URL"]
    if database.startswith("sqlite:///"):
        assert not Path(database.removeprefix("sqlite:///") + ".keys").exists()


def test_send_test_event_errors_name_the_endpoint_and_for_10006_the_pixel(env):
    with FakeKwai() as kwai:
        kwai.fail_next(1, result_code=10006)
        refused = invoke({**env, "KWAI_BRIDGE_KWAI_ENDPOINT": kwai.base_url}, "send-test-event", "--store", "woo",
                         "--clickid", "X")
    assert refused.exit_code == 1
    assert f"from {kwai.base_url}/api" in refused.output
    assert "check the access token of pixel pixel-woocommerce (store woo)" in refused.output
    nobody = f"http://127.0.0.1:{free_port()}/log/common"
    unreachable = invoke({**env, "KWAI_BRIDGE_KWAI_ENDPOINT": nobody, "KWAI_BRIDGE_KWAI_CONNECT_TIMEOUT": "2"},
                         "send-test-event", "--store", "acme", "--clickid", "X", "--json")
    assert unreachable.exit_code == 1 and f"nothing answered at {nobody}/api" in unreachable.output
