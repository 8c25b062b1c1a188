"""Who may use the admin API: users with a role (admin, or merchant of some stores),
their passwords, and their API tokens.

Passwords are hashed with scrypt (`werkzeug.security`, salted, parameters kept in the
hash). API tokens are different: each is 32 random bytes from `secrets`, shown once, and
only its SHA-256 digest is kept. A token has full entropy, so no slow KDF is needed to
make guessing it hopeless (a KDF protects low-entropy secrets that people choose), and
every API request verifies one: a plain digest lets that be one indexed lookup
(`api_tokens.digest` is unique) instead of a deliberately slow hash per request.

Every change is recorded in the audit trail in its own transaction (`kwai_bridge.audit`),
naming the user, the role, the stores, a token's id, name and hint, never a password or a
token.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Collection, Iterable, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from kwai_bridge import audit
from kwai_bridge.db import api_tokens, console_sessions, reading, user_stores, users
from kwai_bridge.sealing import hint

ROLES = ("admin", "merchant")
#: What every token starts with, so that a leaked one is easy to recognise and search for.
TOKEN_PREFIX = "kwb_"
#: `last_used_at` is written at most this often per token: not a write per request.
TOUCH_EVERY = timedelta(seconds=60)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


class AccountError(Exception):
    """A change to users or tokens that cannot be made; `status` is its HTTP status."""

    status = 400


class NoSuchUser(AccountError):
    """No user has this e-mail address."""

    status = 404


class UserExists(AccountError):
    """A user with this e-mail address exists already."""

    status = 409


class NoSuchToken(AccountError):
    """No token matches (or it is revoked already)."""

    status = 404


class UnknownStore(AccountError):
    """A store id that no store has."""


@dataclass(frozen=True)
class Principal:
    """The user behind a request: what they may see."""

    user_id: int
    email: str
    role: str
    store_ids: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_see(self, store_id: str) -> bool:
        return self.is_admin or store_id in self.store_ids

    @property
    def visible(self) -> tuple[str, ...] | None:
        """The stores to filter on: None (every store) for an admin."""
        return None if self.is_admin else tuple(sorted(self.store_ids))


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str
    stores: tuple[str, ...]
    has_password: bool
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict:
        return {"id": self.id, "email": self.email, "role": self.role, "stores": list(self.stores),
                "has_password": self.has_password, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class Token:
    """A token as kept: never its value."""

    id: int
    email: str
    name: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict:
        return {"id": self.id, "email": self.email, "name": self.name, "hint": self.hint,
                "created_at": _iso(self.created_at), "last_used_at": _iso(self.last_used_at),
                "revoked_at": _iso(self.revoked_at)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    if not _EMAIL_RE.match(value):
        raise AccountError(f"{email!r} is not an e-mail address")
    return value


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_stores(store_ids: Iterable[str], *, known: Collection[str]) -> tuple[str, ...]:
    """`store_ids` sorted and unique; UnknownStore names the first one no store has."""
    for store_id in store_ids:
        if store_id not in known:
            raise UnknownStore(f"no store {store_id!r}; known: {', '.join(sorted(known)) or '(none)'}")
    return tuple(sorted(set(store_ids)))


class Accounts:
    """Users and tokens in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- users -----------------------------------------------------------------------
    def add_user(self, email: str, *, role: str, stores: Sequence[str] = (), known: Collection[str] = (),
                 password: str | None = None, actor: str, now: datetime) -> User:
        email = normalise_email(email)
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if role == "admin" and stores:
            raise AccountError("an admin sees every store: stores are for merchants")
        store_ids = check_stores(stores, known=known)
        try:
            with self.engine.begin() as conn:
                user_id = conn.execute(users.insert().values(
                    email=email, role=role, password_hash=_hash(password), created_at=now, updated_at=now,
                ).returning(users.c.id)).scalar_one()
                _put_stores(conn, user_id, store_ids)
                audit.record(conn, actor=actor, action="user.create", target=f"user:{email}", now=now,
                             detail={"role": role, "stores": list(store_ids), "password": password is not None})
        except IntegrityError:
            raise UserExists(f"a user {email!r} exists already") from None
        return self.user(email)

    def set_stores(self, email: str, stores: Sequence[str], *, known: Collection[str], actor: str,
                   now: datetime) -> User:
        """Replace the stores a merchant may see."""
        store_ids = check_stores(stores, known=known)
        with self.engine.begin() as conn:
            row = _locked_user(conn, email)
            if row.role == "admin":
                raise AccountError("an admin sees every store: stores are for merchants")
            conn.execute(delete(user_stores).where(user_stores.c.user_id == row.id))
            _put_stores(conn, row.id, store_ids)
            conn.execute(update(users).where(users.c.id == row.id).values(updated_at=now))
            audit.record(conn, actor=actor, action="user.stores", target=f"user:{row.email}", now=now,
                         detail={"stores": list(store_ids)})
        return self.user(email)

    def set_password(self, email: str, password: str, *, actor: str, now: datetime) -> int:
        """Set the user's password and end their console sessions, which may have been
        opened with the old one (the usual reason for a new password): how many ended."""
        with self.engine.begin() as conn:
            row = _locked_user(conn, email)
            conn.execute(update(users).where(users.c.id == row.id).values(password_hash=_hash(password),
                                                                           updated_at=now))
            ended = conn.execute(delete(console_sessions).where(console_sessions.c.user_id == row.id)).rowcount
            audit.record(conn, actor=actor, action="user.password", target=f"user:{row.email}", now=now,
                         detail={"sessions_ended": ended})
        return ended

    def remove_user(self, email: str, *, actor: str, now: datetime) -> None:
        """Remove a user, their stores and their tokens."""
        with self.engine.begin() as conn:
            row = _locked_user(conn, email)
            conn.execute(delete(api_tokens).where(api_tokens.c.user_id == row.id))
            conn.execute(delete(user_stores).where(user_stores.c.user_id == row.id))
            conn.execute(delete(users).where(users.c.id == row.id))
            audit.record(conn, actor=actor, action="user.delete", target=f"user:{row.email}", now=now,
                         detail={"role": row.role})

    def user(self, email: str) -> User:
        found = self.users(email)
        if not found:
            raise NoSuchUser(f"no user {email!r}")
        return found[0]

    def users(self, email: str | None = None) -> list[User]:
        """Every user by e-mail, or the one with `email`."""
        query = select(users).order_by(users.c.email)
        link_query = select(user_stores).order_by(user_stores.c.store_id)
        if email is not None:
            query = query.where(users.c.email == normalise_email(email))
            link_query = link_query.join(users, users.c.id == user_stores.c.user_id).where(
                users.c.email == normalise_email(email))
        with reading(self.engine) as conn:
            rows = conn.execute(query).all()
            links = conn.execute(link_query).all()
        stores: dict[int, list[str]] = {}
        for link in links:
            stores.setdefault(link.user_id, []).append(link.store_id)
        return [User(r.id, r.email, r.role, tuple(stores.get(r.id, ())), r.password_hash is not None,
                     r.created_at, r.updated_at) for r in rows]

    def principal(self, user_id: int) -> Principal | None:
        """The user with this id as a Principal, or None when they were removed."""
        with reading(self.engine) as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).first()
            return None if row is None else _principal(conn, row)

    def check_password(self, email: str, password: str) -> Principal | None:
        """The user if `password` is theirs, else None (also for an unknown e-mail)."""
        with reading(self.engine) as conn:
            row = conn.execute(select(users).where(users.c.email == email.strip().lower())).first()
            if row is None or not row.password_hash or not check_password_hash(row.password_hash, password):
                return None
            return _principal(conn, row)

    # -- tokens ----------------------------------------------------------------------
    def create_token(self, email: str, *, name: str = "", actor: str, now: datetime) -> tuple[str, Token]:
        """A new token for the user: its value (shown this once) and what is kept of it."""
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            row = _locked_user(conn, email)
            token_id = conn.execute(api_tokens.insert().values(
                user_id=row.id, name=name, digest=digest(value), hint=hint(value), created_at=now,
            ).returning(api_tokens.c.id)).scalar_one()
            audit.record(conn, actor=actor, action="token.create", target=f"user:{row.email}", now=now,
                         detail={"token": token_id, "name": name, "hint": hint(value)})
        return value, next(t for t in self.tokens(email) if t.id == token_id)

    def revoke_token(self, ref: str, *, actor: str, now: datetime) -> Token:
        """Revoke the token `ref` names: its id (`tokens list`) or its value."""
        t = api_tokens.c
        where = t.id == int(ref) if ref.isdigit() else t.digest == digest(ref)
        with self.engine.begin() as conn:
            row = conn.execute(select(api_tokens.c.id, users.c.email).join(users, users.c.id == t.user_id)
                               .where(where, t.revoked_at.is_(None)).with_for_update()).first()
            if row is None:
                raise NoSuchToken("no such token, or it is revoked already")
            conn.execute(update(api_tokens).where(t.id == row.id).values(revoked_at=now))
            audit.record(conn, actor=actor, action="token.revoke", target=f"user:{row.email}", now=now,
                         detail={"token": row.id})
        return next(tok for tok in self.tokens(row.email) if tok.id == row.id)

    def tokens(self, email: str | None = None) -> list[Token]:
        t = api_tokens.c
        query = select(api_tokens, users.c.email).join(users, users.c.id == t.user_id).order_by(t.id)
        if email is not None:
            query = query.where(users.c.email == normalise_email(email))
        with reading(self.engine) as conn:
            return [Token(r.id, r.email, r.name, r.hint, r.created_at, r.last_used_at, r.revoked_at)
                    for r in conn.execute(query)]

    def authenticate(self, token: str, *, now: datetime) -> Principal | None:
        """The user whose unrevoked token this is, else None; notes when it was used."""
        t = api_tokens.c
        with reading(self.engine) as conn:
            found = conn.execute(select(t.id.label("token_id"), t.last_used_at, users).join(users, users.c.id == t.user_id)
                                 .where(t.digest == digest(token), t.revoked_at.is_(None))).first()
            if found is None:
                return None
            principal = _principal(conn, found)
        if found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY:
            with self.engine.begin() as conn:
                conn.execute(update(api_tokens).where(t.id == found.token_id).values(last_used_at=now))
        return principal


def _hash(password: str | None) -> str | None:
    if password is None:
        return None
    if len(password) < 12:
        raise AccountError("a password needs at least 12 characters")
    return generate_password_hash(password, method="scrypt")


def _locked_user(conn: Connection, email: str):
    row = conn.execute(select(users).where(users.c.email == normalise_email(email)).with_for_update()).first()
    if row is None:
        raise NoSuchUser(f"no user {email!r}")
    return row


def _put_stores(conn: Connection, user_id: int, store_ids: Sequence[str]) -> None:
    if store_ids:
        conn.execute(user_stores.insert(), [{"user_id": user_id, "store_id": s} for s in store_ids])


def _principal(conn: Connection, row) -> Principal:
    ids = conn.execute(select(user_stores.c.store_id).where(user_stores.c.user_id == row.id)).scalars()
    return Principal(row.id, row.email, row.role, frozenset(ids))


__all__ = [
    "ROLES", "TOKEN_PREFIX", "AccountError", "Accounts", "NoSuchToken", "NoSuchUser", "Principal", "Token",
    "UnknownStore", "User", "UserExists", "check_stores", "digest", "normalise_email",
]
