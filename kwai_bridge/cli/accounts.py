"""`kwai-bridge users`, `kwai-bridge tokens` and `kwai-bridge audit`: who may use the admin
API, their tokens, and the trail of every change."""
from __future__ import annotations

import json
import sys

import click

from kwai_bridge import audit as audit_trail
from kwai_bridge.accounts import ROLES, AccountError, Accounts, UnknownStore
from kwai_bridge.audit import CLI_ACTOR
from kwai_bridge.cli.base import load_runtime, main, utcnow


def _accounts() -> tuple[Accounts, list[str]]:
    """The accounts and the ids of the stores, from a runtime that needs no secret key."""
    runtime = load_runtime(create=False, secrets=False)
    return Accounts(runtime.engine), runtime.catalog.ids()


def _failed(exc: AccountError) -> click.ClickException:
    if isinstance(exc, UnknownStore):
        return click.BadParameter(str(exc), param_hint="store id")
    return click.ClickException(str(exc))


@main.group()
def users() -> None:
    """People who use the admin API: admins (every store) and merchants (their stores)."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--store", "stores", multiple=True, help="a store the merchant may see (repeat for more)")
@click.option("--password-stdin", is_flag=True, help="read a password from the first line of standard input")
def users_add(email: str, role: str, stores: tuple[str, ...], password_stdin: bool) -> None:
    """Add a user."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    accounts, known = _accounts()
    try:
        user = accounts.add_user(email, role=role, stores=stores, known=known, password=password,
                                 actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(f"added {user.role} {user.email}" + (f" (stores: {', '.join(user.stores)})" if user.stores else ""))


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json: bool) -> None:
    """Every user with their role and stores."""
    accounts, _ = _accounts()
    found = accounts.users()
    if as_json:
        click.echo(json.dumps([u.as_json() for u in found], indent=2))
        return
    for user in found:
        stores = "every store" if user.role == "admin" else (", ".join(user.stores) or "no store")
        click.echo(f"{user.email:<32} {user.role:<9} {stores}")
    click.echo(f"{len(found)} user(s)")


@users.command("remove")
@click.argument("email")
def users_remove(email: str) -> None:
    """Remove a user and revoke their tokens."""
    accounts, _ = _accounts()
    try:
        accounts.remove_user(email, actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(f"removed {email.strip().lower()}")


@users.command("set-stores")
@click.argument("email")
@click.argument("store_ids", nargs=-1)
def users_set_stores(email: str, store_ids: tuple[str, ...]) -> None:
    """Replace the stores a merchant may see (none: no store)."""
    accounts, known = _accounts()
    try:
        user = accounts.set_stores(email, store_ids, known=known, actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(f"{user.email}: {', '.join(user.stores) or 'no store'}")


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of standard input "
              "(otherwise it is asked for twice, without echo)")
def users_set_password(email: str, password_stdin: bool) -> None:
    """Set a user's console password; their open console sessions end."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    accounts, _ = _accounts()
    try:
        ended = accounts.set_password(email, password, actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(f"password set for {email.strip().lower()}; {ended} console session(s) ended")


@main.group()
def tokens() -> None:
    """API tokens (`Authorization: Bearer <token>`)."""


@tokens.command("create")
@click.argument("email")
@click.option("--name", default="", help="what the token is for, shown in `tokens list`")
def tokens_create(email: str, name: str) -> None:
    """Print a new token for the user: one line, shown this once, kept only as a digest."""
    accounts, _ = _accounts()
    try:
        value, _ = accounts.create_token(email, name=name, actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(value)


@tokens.command("list")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True)
def tokens_list(email: str | None, as_json: bool) -> None:
    """Tokens (of one user, or all): id, name, hint, when last used; never the value."""
    accounts, _ = _accounts()
    try:
        found = accounts.tokens(email)
    except AccountError as exc:
        raise _failed(exc) from exc
    if as_json:
        click.echo(json.dumps([t.as_json() for t in found], indent=2))
        return
    for t in found:
        state = "revoked" if t.revoked_at else f"last used {t.as_json()['last_used_at'] or 'never'}"
        click.echo(f"{t.id:>6} {t.email:<32} {t.hint:<6} {t.name:<20} {state}")


@tokens.command("revoke")
@click.argument("token")
def tokens_revoke(token: str) -> None:
    """Revoke a token: give its id (from `tokens list`) or the token itself."""
    accounts, _ = _accounts()
    try:
        revoked = accounts.revoke_token(token.strip(), actor=CLI_ACTOR, now=utcnow())
    except AccountError as exc:
        raise _failed(exc) from exc
    click.echo(f"revoked token {revoked.id} ({revoked.hint}) of {revoked.email}")


@main.command("audit")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--target", help="only entries about this, e.g. store:acme or user:ops@agency.example")
@click.option("--json", "as_json", is_flag=True)
def audit(limit: int, target: str | None, as_json: bool) -> None:
    """The audit trail, newest first: who changed which store, user or token, and replays."""
    runtime = load_runtime(create=False, secrets=False)
    found = audit_trail.entries(runtime.engine, limit=limit, target=target)
    if as_json:
        click.echo(json.dumps([e.as_json() for e in found], indent=2))
        return
    for entry in found:
        e = entry.as_json()
        detail = json.dumps(e["detail"], sort_keys=True, ensure_ascii=False) if e["detail"] else ""
        click.echo(f"{e['at']}  {e['actor']:<24} {e['action']:<14} {e['target']:<28} {detail}")
