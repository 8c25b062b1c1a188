"""Users, roles and API tokens: e-mails normalised, stores checked, passwords and tokens
kept only as a hash and a digest, tokens revoked, every change in the audit trail."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from kwai_bridge import audit
from kwai_bridge.accounts import (
    AccountError, Accounts, NoSuchToken, NoSuchUser, Principal, UnknownStore, UserExists, digest,
)
from kwai_bridge.db import api_tokens, audit_log, make_engine, metadata, migrate, users

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery staple"
KNOWN = ("acme", "globex")


@pytest.fixture
def accounts(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    return Accounts(engine)


def every_value(engine) -> list[str]:
    """Every value of every row of every table, as text."""
    with engine.connect() as conn:
        return [str(v) for table in metadata.sorted_tables for row in conn.execute(select(table)) for v in row]


def test_users_are_kept_by_normalised_email_with_their_role_and_stores(accounts):
    user = accounts.add_user("  Ann@Shop.Example ", role="merchant", stores=["globex", "acme", "acme"], known=KNOWN,
                             actor="cli", now=NOW)
    assert (user.email, user.role, user.stores, user.has_password) == ("ann@shop.example", "merchant",
                                                                       ("acme", "globex"), False)
    with pytest.raises(UserExists):
        accounts.add_user("ANN@shop.example", role="admin", actor="cli", now=NOW)
    with pytest.raises(UnknownStore, match=r"^no store 'nosuch'; known: acme, globex$"):
        accounts.add_user("bob@shop.example", role="merchant", stores=["nosuch"], known=KNOWN, actor="cli", now=NOW)
    with pytest.raises(AccountError, match="admin sees every store"):
        accounts.add_user("ops@agency.example", role="admin", stores=["acme"], known=KNOWN, actor="cli", now=NOW)
    with pytest.raises(AccountError, match="role must be one of admin, merchant"):
        accounts.add_user("x@y.example", role="owner", actor="cli", now=NOW)
    with pytest.raises(AccountError, match="not an e-mail"):
        accounts.add_user("nobody", role="admin", actor="cli", now=NOW)

    changed = accounts.set_stores("ann@shop.example", ["globex"], known=KNOWN, actor="ops", now=NOW)
    assert changed.stores == ("globex",)
    with pytest.raises(UnknownStore):
        accounts.set_stores("ann@shop.example", ["gone"], known=KNOWN, actor="ops", now=NOW)
    assert [u.email for u in accounts.users()] == ["ann@shop.example"]
    accounts.remove_user("Ann@shop.example", actor="ops", now=NOW)
    assert accounts.users() == []
    with pytest.raises(NoSuchUser):
        accounts.remove_user("ann@shop.example", actor="ops", now=NOW)


def test_a_token_authenticates_its_user_until_it_is_revoked(accounts):
    accounts.add_user("ann@shop.example", role="merchant", stores=["acme"], known=KNOWN, actor="cli", now=NOW)
    value, token = accounts.create_token("ann@shop.example", name="reports", actor="cli", now=NOW)
    assert value.startswith("kwb_") and len(value) >= 4 + 43 and token.hint == "…" + value[-4:]
    ann = accounts.user("ann@shop.example")
    assert accounts.authenticate(value, now=NOW) == Principal(ann.id, "ann@shop.example", "merchant",
                                                              frozenset({"acme"}))
    principal = accounts.authenticate(value, now=NOW)
    assert principal.can_see("acme") and not principal.can_see("globex") and principal.visible == ("acme",)
    assert accounts.authenticate(value + "x", now=NOW) is None
    assert accounts.authenticate("", now=NOW) is None

    other, _ = accounts.create_token("ann@shop.example", actor="cli", now=NOW)
    accounts.revoke_token(str(token.id), actor="cli", now=NOW)  # by id
    assert accounts.authenticate(value, now=NOW) is None
    assert accounts.authenticate(other, now=NOW) is not None
    accounts.revoke_token(other, actor="cli", now=NOW)  # by value
    assert accounts.authenticate(other, now=NOW) is None
    with pytest.raises(NoSuchToken):
        accounts.revoke_token(other, actor="cli", now=NOW)
    assert all(t.revoked_at == NOW for t in accounts.tokens("ann@shop.example"))


def test_last_use_is_written_at_most_once_a_minute(accounts):
    accounts.add_user("ops@agency.example", role="admin", actor="cli", now=NOW)
    value, token = accounts.create_token("ops@agency.example", actor="cli", now=NOW)
    assert token.last_used_at is None
    for seconds in (0, 30, 59):
        assert accounts.authenticate(value, now=NOW + timedelta(seconds=seconds)).is_admin
    assert accounts.tokens()[0].last_used_at == NOW
    accounts.authenticate(value, now=NOW + timedelta(seconds=61))
    assert accounts.tokens()[0].last_used_at == NOW + timedelta(seconds=61)


def test_removing_a_user_removes_their_tokens(accounts):
    accounts.add_user("ops@agency.example", role="admin", actor="cli", now=NOW)
    value, _ = accounts.create_token("ops@agency.example", actor="cli", now=NOW)
    accounts.remove_user("ops@agency.example", actor="cli", now=NOW)
    assert accounts.authenticate(value, now=NOW) is None and accounts.tokens() == []


def test_passwords_and_tokens_are_kept_only_as_a_hash_and_a_digest(accounts):
    accounts.add_user("ops@agency.example", role="admin", password=PASSWORD, actor="cli", now=NOW)
    value, _ = accounts.create_token("ops@agency.example", actor="cli", now=NOW)
    accounts.set_password("ops@agency.example", PASSWORD + "!", actor="cli", now=NOW)
    values = every_value(accounts.engine)
    assert not [v for v in values if PASSWORD in v or value in v or value[4:] in v]
    with accounts.engine.connect() as conn:
        assert conn.execute(select(users.c.password_hash)).scalar().startswith("scrypt:")
        assert conn.execute(select(api_tokens.c.digest)).scalar() == digest(value)
    assert accounts.check_password("OPS@agency.example", PASSWORD + "!").is_admin
    assert accounts.check_password("ops@agency.example", PASSWORD) is None
    assert accounts.check_password("nobody@agency.example", PASSWORD) is None
    with pytest.raises(AccountError, match="at least 12"):
        accounts.set_password("ops@agency.example", "short", actor="cli", now=NOW)


def test_every_change_is_in_the_audit_trail_without_a_secret(accounts):
    accounts.add_user("ann@shop.example", role="merchant", stores=["acme"], known=KNOWN, password=PASSWORD,
                      actor="ops@agency.example", now=NOW)
    accounts.set_stores("ann@shop.example", ["acme", "globex"], known=KNOWN, actor="ops@agency.example", now=NOW)
    accounts.set_password("ann@shop.example", PASSWORD, actor="ops@agency.example", now=NOW)
    value, token = accounts.create_token("ann@shop.example", name="ci", actor="ops@agency.example", now=NOW)
    accounts.revoke_token(str(token.id), actor="ops@agency.example", now=NOW)
    accounts.remove_user("ann@shop.example", actor="ops@agency.example", now=NOW)
    trail = [(e.actor, e.action, e.target, dict(e.detail)) for e in reversed(audit.entries(accounts.engine))]
    who, target = "ops@agency.example", "user:ann@shop.example"
    assert trail == [
        (who, "user.create", target, {"role": "merchant", "stores": ["acme"], "password": True}),
        (who, "user.stores", target, {"stores": ["acme", "globex"]}),
        (who, "user.password", target, {"sessions_ended": 0}),
        (who, "token.create", target, {"token": token.id, "name": "ci", "hint": token.hint}),
        (who, "token.revoke", target, {"token": token.id}),
        (who, "user.delete", target, {"role": "merchant"}),
    ]
    with accounts.engine.connect() as conn:
        details = " ".join(conn.execute(select(audit_log.c.detail)).scalars())
    assert PASSWORD not in details and value not in details
