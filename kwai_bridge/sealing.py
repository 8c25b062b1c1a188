"""Secrets at rest: webhook secrets, Kwai access tokens and platform credentials are kept
in the database sealed with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`).

The keys come from `KWAI_BRIDGE_SECRET_KEYS` (comma-separated Fernet keys): the first
seals, every one opens, so a key is rotated by putting a new one first, running
`kwai-bridge secrets rotate`, then dropping the old one. Without the variable, a SQLite
deployment gets a generated key file beside its database (mode 0600), so that `make run`
works on a fresh clone; PostgreSQL, shared by several machines, refuses that fallback.

A secret is never shown whole: `hint()` gives its last four characters.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from kwai_bridge.db import sqlite_path

log = logging.getLogger(__name__)

KEYS_VARIABLE = "KWAI_BRIDGE_SECRET_KEYS"
#: Shown in place of a secret: what precedes its last characters.
MASK = "…"


class SealingError(Exception):
    """A secret cannot be sealed or opened: no usable key, or not one of ours."""


def hint(secret: str) -> str:
    """The masked form of a secret: `…` and its last four characters (only `…` when
    short); nothing for an optional secret that is not set."""
    if not secret:
        return ""
    return MASK + secret[-4:] if len(secret) >= 12 else MASK


@dataclass(frozen=True)
class Sealer:
    """Seals with the first key, opens with any."""

    keys: tuple[bytes, ...]
    source: str  # where the keys came from, for messages: never the keys themselves

    def __post_init__(self) -> None:
        if not self.keys:
            raise SealingError(f"no secret keys ({self.source})")
        try:
            fernets = [Fernet(key) for key in self.keys]
        except (ValueError, TypeError):
            raise SealingError(f"{self.source}: each key must be a Fernet key "
                               "(make one with: kwai-bridge secrets new-key)") from None
        object.__setattr__(self, "_fernet", MultiFernet(fernets))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SealingError(f"a stored secret does not open with the keys from {self.source}: "
                               f"put the key it was sealed with in {KEYS_VARIABLE}") from None

    def reseal(self, sealed: str) -> str:
        """`sealed` sealed again with the first key (what `secrets rotate` does)."""
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError):
            raise SealingError(f"a stored secret does not open with the keys from {self.source}") from None


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def make_sealer(keys: str, *, database_url: str) -> Sealer:
    """A sealer over `keys` (`KWAI_BRIDGE_SECRET_KEYS`); without them, a SQLite
    database's key file (made on first use), and on PostgreSQL an error."""
    raw = keys.strip()
    if raw:
        keys = tuple(k.strip().encode("ascii", "replace") for k in raw.split(",") if k.strip())
        return Sealer(keys, KEYS_VARIABLE)
    path = key_file_for(database_url)
    if path is None:
        raise SealingError(f"{KEYS_VARIABLE} is not set: a shared database needs the same keys on every "
                           "machine (make one with: kwai-bridge secrets new-key)")
    return Sealer(_read_or_make(path), str(path))


def key_file_for(database_url: str) -> Path | None:
    """Where the fallback key file of a SQLite database lives; None for other databases."""
    database = sqlite_path(database_url)
    return database.with_name(database.name + ".keys") if database is not None else None


def _read_or_make(path: Path) -> tuple[bytes, ...]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = new_key()
        try:
            # O_EXCL: two processes starting at once make one file; the loser reads it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            text = path.read_text(encoding="ascii")
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            log.warning("%s is not set: generated a secret key in %s (mode 0600); keep that file with the "
                        "database, or set the variable", KEYS_VARIABLE, path)
            return (key.encode("ascii"),)
    keys = tuple(line.strip().encode("ascii") for line in text.splitlines() if line.strip())
    if not keys:
        raise SealingError(f"{path} holds no key")
    return keys


__all__ = ["KEYS_VARIABLE", "MASK", "Sealer", "SealingError", "hint", "key_file_for", "make_sealer", "new_key"]
