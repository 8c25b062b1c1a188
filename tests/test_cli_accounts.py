"""`kwai-bridge users`, `tokens` and `audit` against real databases."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kwai_bridge.cli as cli
from kwai_bridge.accounts import Accounts
from kwai_bridge.db import make_engine
from kwai_bridge.runtime import Runtime
from tests.serving import run_cli, store_entry, write_stores

PASSWORD = "a long enough passphrase"


@pytest.fixture
def env(tmp_path, database_url):
    stores = write_stores(tmp_path / "stores.toml", [store_entry("shopify", "acme"),
                                                      store_entry("woocommerce", "woo")])
    env = {"KWAI_BRIDGE_DATABASE_URL": database_url, "KWAI_BRIDGE_STORES": str(stores)}
    assert invoke(env, "migrate").exit_code == 0
    return env


def invoke(env, *args, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), env=env, input=input, catch_exceptions=False)


def accounts(env) -> Accounts:
    return Accounts(make_engine(env["KWAI_BRIDGE_DATABASE_URL"]))


def test_users_add_list_set_stores_and_remove(env):
    added = invoke(env, "users", "add", "Ops@Agency.example", "--role", "admin", "--password-stdin",
                   input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "added admin ops@agency.example" in added.stdout
    assert invoke(env, "users", "add", "ann@shop.example", "--role", "merchant", "--store", "acme").exit_code == 0
    listed = json.loads(invoke(env, "users", "list", "--json").stdout)
    assert [(u["email"], u["role"], u["stores"], u["has_password"]) for u in listed] == [
        ("ann@shop.example", "merchant", ["acme"], False), ("ops@agency.example", "admin", [], True)]
    assert set(listed[0]) == {"id", "email", "role", "stores", "has_password", "created_at", "updated_at"}
    assert accounts(env).check_password("ops@agency.example", PASSWORD) is not None

    assert "ann@shop.example: acme, woo" in invoke(env, "users", "set-stores", "ann@shop.example", "woo",
                                                   "acme").stdout
    text = invoke(env, "users", "list").stdout
    assert "acme, woo" in text and "every store" in text and "2 user(s)" in text
    assert invoke(env, "users", "remove", "ANN@shop.example").exit_code == 0
    assert [u["email"] for u in json.loads(invoke(env, "users", "list", "--json").stdout)] == ["ops@agency.example"]
    gone = invoke(env, "users", "remove", "ann@shop.example")
    assert gone.exit_code == 1 and "no user 'ann@shop.example'" in gone.output


def test_users_set_password_ends_the_users_console_sessions(env):
    from datetime import datetime, timezone

    from kwai_bridge.sessions import Sessions

    assert invoke(env, "users", "add", "ops@agency.example", "--role", "admin", "--password-stdin",
                  input=PASSWORD + "\n").exit_code == 0
    sessions = Sessions(make_engine(env["KWAI_BRIDGE_DATABASE_URL"]))
    now = datetime.now(timezone.utc)
    cookie, _ = sessions.login("ops@agency.example", PASSWORD, address="127.0.0.1", now=now)
    assert sessions.find(cookie, now=now) is not None

    short = invoke(env, "users", "set-password", "ops@agency.example", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    assert sessions.find(cookie, now=now) is not None  # a refused password changes nothing

    # Asked twice without echo when not read from standard input.
    mismatch = invoke(env, "users", "set-password", "ops@agency.example",
                      input="the new passphrase\nnot the same one\nthe new passphrase\nthe new passphrase\n")
    assert mismatch.exit_code == 0, mismatch.output
    assert "the new passphrase" not in mismatch.stdout
    assert "1 console session(s) ended" in mismatch.stdout
    assert sessions.find(cookie, now=now) is None
    assert accounts(env).check_password("ops@agency.example", PASSWORD) is None
    assert accounts(env).check_password("ops@agency.example", "the new passphrase") is not None
    audit = json.loads(invoke(env, "audit", "--json", "--target", "user:ops@agency.example").stdout)
    assert any(e["action"] == "user.password" for e in audit)
    assert "no user" in invoke(env, "users", "set-password", "nobody@x.example", "--password-stdin",
                               input=PASSWORD + "\n").output


@pytest.mark.parametrize("args", [
    ("users", "add", "ann@shop.example", "--role", "merchant", "--store", "acme", "--store", "nosuch"),
    ("users", "set-stores", "ops@agency.example", "nosuch"),
])
def test_an_unknown_store_is_refused_with_the_known_ones(env, args):
    invoke(env, "users", "add", "ops@agency.example", "--role", "merchant")
    refused = invoke(env, *args)
    assert refused.exit_code == 2
    assert "no store 'nosuch'; known: acme, woo" in refused.output
    assert all(u.stores == () for u in accounts(env).users())


def test_tokens_create_prints_one_line_and_revoke_takes_an_id_or_the_token(env, tmp_path):
    invoke(env, "users", "add", "ops@agency.example", "--role", "admin")
    process = run_cli(env, "tokens", "create", "ops@agency.example", "--name", "deploy")
    assert process.returncode == 0, process.stderr
    lines = process.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kwb_") and process.stdout == lines[0] + "\n"
    token = lines[0]
    assert token not in process.stderr
    assert accounts(env).authenticate(token, now=accounts(env).tokens()[0].created_at).is_admin

    listed = json.loads(invoke(env, "tokens", "list", "--json").stdout)
    assert [(t["name"], t["hint"], t["revoked_at"]) for t in listed] == [("deploy", "…" + token[-4:], None)]
    assert token not in invoke(env, "tokens", "list").stdout

    second = invoke(env, "tokens", "create", "ops@agency.example").stdout.strip()
    assert "revoked token 1" in invoke(env, "tokens", "revoke", str(listed[0]["id"])).stdout
    assert "revoked token 2" in invoke(env, "tokens", "revoke", second).stdout
    again = invoke(env, "tokens", "revoke", second)
    assert again.exit_code == 1 and "revoked already" in again.output
    assert invoke(env, "tokens", "create", "nobody@agency.example").exit_code == 1


def test_audit_lists_the_trail_newest_first(env):
    invoke(env, "users", "add", "ann@shop.example", "--role", "merchant", "--store", "acme")
    invoke(env, "tokens", "create", "ann@shop.example", "--name", "ci")
    entries = json.loads(invoke(env, "audit", "--json", "--limit", "2").stdout)
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("token.create", "user:ann@shop.example", "cli"), ("user.create", "user:ann@shop.example", "cli")]
    assert set(entries[0]) == {"id", "at", "actor", "action", "target", "detail"}
    every = json.loads(invoke(env, "audit", "--json").stdout)
    assert {"store.create"} <= {e["action"] for e in every}  # the stores file's import
    assert [e["action"] for e in json.loads(invoke(env, "audit", "--json", "--target", "store:acme").stdout)] == [
        "store.create"]
    assert "token.create" in invoke(env, "audit").stdout


def test_user_commands_need_no_secret_key(env):
    """They read and write users only: no store secret is opened."""
    runtime = Runtime.from_env({**env, "KWAI_BRIDGE_SECRET_KEYS": ""}, secrets=False)
    assert runtime.catalog.sealer is None
    result = invoke({**env, "KWAI_BRIDGE_SECRET_KEYS": ""}, "users", "add", "x@y.example", "--role", "merchant",
                    "--store", "acme")
    assert result.exit_code == 0, result.output
