"""The console's sign-ins: e-mail and password checked against `accounts`, attempts
limited per account and per address (`ratelimit`, shared by every process), and
server-side sessions (`console_sessions`) that end after `LIFETIME` or at logout.

The cookie holds 32 random bytes; only their SHA-256 digest is kept, as for API tokens.
Each session has its own form token (CSRF), compared in constant time.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from kwai_bridge.accounts import Accounts, Principal, digest
from kwai_bridge.db import console_sessions, reading
from kwai_bridge.ratelimit import FixedWindows, Limit, RateLimited

log = logging.getLogger(__name__)

#: A session ends this long after it began, whatever happens in between.
LIFETIME = timedelta(hours=12)
#: Login attempts counted per window, per e-mail address and per client address.
WINDOW_SECONDS = 900
PER_ACCOUNT = 10
PER_ADDRESS = 50


class LoginError(Exception):
    """A login that did not succeed; `status` is its HTTP status."""

    status = 401


class WrongPassword(LoginError):
    """No such user, no password set, or the wrong one: answered alike."""


class TooManyAttempts(LoginError):
    """Too many attempts for this account or from this address in the window."""

    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Session:
    """A signed-in user and the form token of their session."""

    id: int
    principal: Principal
    csrf: str
    expires_at: datetime

    def form_token_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), sent.encode("utf-8", "replace"))


class Sessions:
    """Console sessions in the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.accounts = Accounts(engine)
        self._windows = FixedWindows(engine.dialect, seconds=WINDOW_SECONDS)

    def login(self, email: str, password: str, *, address: str, now: datetime) -> tuple[str, Session]:
        """A new session for the user if the password is theirs: (cookie value, session)."""
        account = email.strip().lower()
        limits = [Limit("console-login-account", account[:320], PER_ACCOUNT),
                  Limit("console-login-address", address, PER_ADDRESS)]
        try:
            with self.engine.begin() as conn:  # counted whether the password is right or not
                self._windows.take(conn, limits, now=now)
        except RateLimited as exc:
            log.warning("console login refused: too many attempts (%s)", exc.limit.scope)
            raise TooManyAttempts("too many login attempts: wait a few minutes and try again",
                                  exc.retry_after) from None
        principal = self.accounts.check_password(account, password)
        if principal is None:
            log.info("console login failed (user id not logged: unknown or wrong password)")
            raise WrongPassword("wrong e-mail address or password")
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(delete(console_sessions).where(console_sessions.c.expires_at <= now))
            session_id = conn.execute(console_sessions.insert().values(
                digest=digest(value), user_id=principal.user_id, csrf=csrf, created_at=now,
                expires_at=now + LIFETIME).returning(console_sessions.c.id)).scalar_one()
        log.info("console login: user %d, session %d", principal.user_id, session_id)
        return value, Session(session_id, principal, csrf, now + LIFETIME)

    def find(self, value: str | None, *, now: datetime) -> Session | None:
        """The live session whose cookie value this is, else None."""
        if not value:
            return None
        s = console_sessions.c
        with reading(self.engine) as conn:
            row = conn.execute(select(s.id, s.user_id, s.csrf, s.expires_at)
                               .where(s.digest == digest(value), s.expires_at > now)).first()
        if row is None:
            return None
        principal = self.accounts.principal(row.user_id)
        return None if principal is None else Session(row.id, principal, row.csrf, row.expires_at)

    def end(self, value: str | None) -> None:
        """Log out: the session is gone for every process at once."""
        if value:
            with self.engine.begin() as conn:
                conn.execute(delete(console_sessions).where(console_sessions.c.digest == digest(value)))


__all__ = ["LIFETIME", "LoginError", "Session", "Sessions", "TooManyAttempts", "WrongPassword"]
