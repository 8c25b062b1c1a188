"""Value parsers shared by the stores file and the process settings.

A parser takes one raw value and returns it checked and converted, or raises Invalid
with the end of a sentence; the caller begins it with where the value came from (a
store and field, or a variable), so no parser ever repeats a value that may be a secret.
"""
from __future__ import annotations

import re
from typing import Any, Callable


class Invalid(Exception):
    """A value is wrong; the message completes `<where>: `."""


class FromEnv(str):
    """A string read from the environment: whole-number and true/false parsers may read it."""


def non_empty_string(v: Any) -> str:
    """A non-empty string, stripped."""
    if not isinstance(v, str) or not v.strip():
        raise Invalid("must be a non-empty string")
    return str(v).strip()


def choice(*allowed: str) -> Callable[[Any], str]:
    """One of `allowed`, exactly as written."""
    def parse(v: Any) -> str:
        if not isinstance(v, str) or v not in allowed:
            shown = f", not {str(v)!r}" if isinstance(v, str) else ""
            raise Invalid(f"must be one of {', '.join(repr(a) for a in allowed)}{shown}")
        return str(v)
    return parse


def boolean(v: Any) -> bool:
    """A bool, or "true"/"false" read from the environment."""
    if isinstance(v, FromEnv) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    if not isinstance(v, bool):
        raise Invalid("must be true or false")
    return v


def integer(low: int, high: int) -> Callable[[Any], int]:
    """A whole number from `low` to `high` (digits when read from the environment)."""
    def parse(v: Any) -> int:
        if isinstance(v, FromEnv) and re.fullmatch(r"\s*-?\d+\s*", v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise Invalid(f"must be a whole number from {low} to {high}")
        return v
    return parse


def strings(*, non_empty_list: bool, what: str) -> Callable[[Any], tuple[str, ...]]:
    """A list of non-empty strings, stripped; `what` completes the sentence when it is not."""
    def parse(v: Any) -> tuple[str, ...]:
        if (not isinstance(v, list) or (non_empty_list and not v)
                or any(not isinstance(s, str) or not s.strip() for s in v)):
            raise Invalid(what)
        return tuple(str(s).strip() for s in v)
    return parse


__all__ = ["FromEnv", "Invalid", "boolean", "choice", "integer", "non_empty_string", "strings"]
