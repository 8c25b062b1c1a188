"""Finding a Kwai click id in landing URLs and in cart, note and order attributes.

Kwai appends `click_id=<value>` to the first landing page only, URL-encoded. A Kwai click
id is base64-like (`+`, `/`, `_`, `-`, `=`), so values are percent-decoded exactly once
and a literal `+` stays a `+`: `parse_qs` and `unquote_plus` would turn it into a space,
which is why the query is split by hand here.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import unquote

#: Parameters whose value may itself be a URL carrying the click id (looked into once).
REDIRECT_PARAMS: tuple[str, ...] = ("redirect", "redirect_to", "redirect_uri", "return_to", "next", "url", "u")

#: Cart / note attribute names that carry a click id written by the storefront, in order
#: of preference. The snippet writes `__kwai_click_id` on Shopify (a private cart attribute:
#: hidden at checkout and from the Ajax API, still on the order) and `_kwai_click_id` on
#: Shopline (themes hide names that start with `_`); `kwai_click_id` is what its first
#: version wrote, still read for carts made then.
ATTRIBUTE_NAMES: tuple[str, ...] = ("__kwai_click_id", "_kwai_click_id", "kwai_click_id")


def click_id_from_url(url: str | None, params: Sequence[str]) -> str | None:
    """Return the click id carried by `url` under any of `params`, or None.

    Absolute and relative URLs (`/?click_id=..`, `?click_id=..`) are accepted; the
    query comes first, then the fragment, then a redirect parameter whose value is a
    URL (one level deep). Within one place the last non-empty occurrence wins; among
    several names in `params`, the first that has a value wins.
    """
    return _from_url(url, params, depth=1)


def click_id_from_params(mapping: Mapping[str, Any], params: Sequence[str] = ("click_id",)) -> str | None:
    """Return the click id from already-decoded parameters (a query dict), or None."""
    if not isinstance(mapping, Mapping):
        return None
    for name in params:
        value = mapping.get(name)
        if isinstance(value, (list, tuple)):
            value = next((v for v in reversed(value) if _clean(v)), None)
        if _clean(value):
            return _clean(value)
    return None


def click_id_from_attributes(attributes: Any, names: Sequence[str] = ATTRIBUTE_NAMES) -> str | None:
    """Return the click id stored as an attribute, used as it is (stripped), or None.

    Accepts Shopify/Shopline `note_attributes` (`[{"name": .., "value": ..}]`), a plain
    attributes dict, and WooCommerce `meta_data` (`[{"key": .., "value": ..}]`).
    """
    if isinstance(attributes, Mapping):
        pairs: Iterable[tuple[Any, Any]] = attributes.items()
    elif isinstance(attributes, list):
        pairs = [
            (item.get("name", item.get("key")), item.get("value"))
            for item in attributes
            if isinstance(item, Mapping)
        ]
    else:
        return None
    found: dict[str, str] = {}
    for name, value in pairs:
        if isinstance(name, str) and name.strip() in names and _clean(value):
            found[name.strip()] = _clean(value)  # the last non-empty one wins
    return next((found[name] for name in names if name in found), None)


def find_click(*, attributes: Sequence[Any] = (), meta: Any = None, urls: Sequence[Any] = (),
               params: Sequence[str]) -> tuple[str | None, str | None]:
    """`(click id, source)`: cart/note attributes first (source `attribute`), then order
    meta `_kwai_click_id` (`order_meta`), then landing URLs (`landing_url`)."""
    for source in attributes:
        found = click_id_from_attributes(source)
        if found:
            return found, "attribute"
    if meta is not None:
        found = click_id_from_attributes(meta, ("_kwai_click_id", "kwai_click_id"))
        if found:
            return found, "order_meta"
    for url in urls:
        found = click_id_from_url(url if isinstance(url, str) else None, params)
        if found:
            return found, "landing_url"
    return None, None


# -- click ids from URLs that WordPress sanitised -------------------------------------
#: Characters of a base64 click id that every URL encoder escapes in a query value. Kwai
#: escapes `_` as well (the manual's example has `%5F`), but many encoders leave `_` and
#: `-` as they are, so finding one proves nothing about how the URL was kept.
ALWAYS_ESCAPED = frozenset("+/=")
_BASE64_LIKE = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
#: Characters a URL carries only once decoded (an escape removed leaves none of them).
_DECODED_ONLY = re.compile(r"[\s\"<>\\^`{|}]|[^\x00-\x7f]")


def stripped_click_doubt(click_id: str, url: str) -> str | None:
    """Why `click_id`, read from `url` as WordPress kept it, may be corrupted; None when it
    cannot have been.

    WordPress removes every `%xx` from the order attribution's session entry. Where the
    entry was decoded before it was kept, nothing was left to remove; where it was not, a
    click id loses the characters that had been escaped and still looks like a click id.
    So an id is trusted only when the entry shows it was decoded: the id holds a
    character every encoder escapes (`+`, `/`, `=`), or the URL holds one that only a
    decoded URL has (a space, say); and only when its shape can be base64's (alphabet,
    padding, length).
    """
    if not _BASE64_LIKE.match(click_id):
        return "the click id has characters a Kwai click id does not have"
    bare = click_id.rstrip("=")
    if len(bare) % 4 == 1 or (bare != click_id and len(click_id) % 4):
        return "the click id's length or padding cannot be base64's"
    if any(ch in ALWAYS_ESCAPED for ch in click_id) or _DECODED_ONLY.search(url):
        return None
    return ("the landing URL may have been kept with its escapes removed, and nothing shows that "
            "the click id kept all its characters")


# -- internals -----------------------------------------------------------------------
def _from_url(url: Any, params: Sequence[str], *, depth: int) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return None
    query, fragment = _query_and_fragment(url.strip())
    places = [_pairs(query), _pairs(fragment)]
    for pairs in places:
        for name in params:
            value = _last(pairs, name)
            if value:
                return value
    if depth > 0:
        for pairs in places:
            for name in REDIRECT_PARAMS:
                for key, value in reversed(pairs):
                    if key == name and ("?" in value or "#" in value):
                        found = _from_url(value, params, depth=depth - 1)
                        if found:
                            return found
    return None


def _query_and_fragment(url: str) -> tuple[str, str]:
    """Split `url` into its query and the query-like part of its fragment."""
    base, _, fragment = url.partition("#")
    if "?" in base:
        query = base.split("?", 1)[1]
    elif "=" in base and "/" not in base and ":" not in base:
        query = base  # a bare query string such as `a=b&click_id=c`
    else:
        query = ""
    if "?" in fragment:  # `#/route?click_id=..`
        fragment = fragment.split("?", 1)[1]
    return query, fragment


def _pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key).strip(), unquote(value)))
    return pairs


def _last(pairs: list[tuple[str, str]], name: str) -> str | None:
    for key, value in reversed(pairs):
        if key == name and value.strip():
            return value.strip()
    return None


def _clean(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


__all__ = [
    "ALWAYS_ESCAPED", "ATTRIBUTE_NAMES", "REDIRECT_PARAMS", "click_id_from_attributes", "find_click",
    "stripped_click_doubt",
    "click_id_from_params", "click_id_from_url",
]
