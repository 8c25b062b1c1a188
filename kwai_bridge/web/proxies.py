"""The client's address behind reverse proxies: WSGI middleware that believes
X-Forwarded-For and X-Forwarded-Proto only from a peer that is one of the configured
proxies (`KWAI_BRIDGE_TRUSTED_PROXIES` naming their addresses or networks). From any
other peer the headers are ignored, so a client that reaches the bridge directly cannot
name its own address. The hop-count form of the setting is werkzeug's ProxyFix instead.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable

from kwai_bridge.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(value: str | None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


class ForwardedByTrustedProxies:
    """Set REMOTE_ADDR (and the URL scheme) from the forwarding headers when the peer is
    one of `networks`: the client is the rightmost address in X-Forwarded-For that is not
    itself a trusted proxy (the proxies append what they saw; what lies to its left, the
    client may have written)."""

    def __init__(self, app: Callable[..., Any], networks: Iterable[IPNetwork]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def trusted(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, forwarded_for: str) -> str | None:
        """The client's address in a trusted proxy's X-Forwarded-For, None if it names none."""
        client = None
        for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
            address = _address(hop)
            if address is None:
                break  # not an address: nothing to its left can be vouched for
            client = str(address)
            if not self.trusted(address):
                break
        return client

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.trusted(_address(environ.get("REMOTE_ADDR"))):
            client = self.client(environ.get("HTTP_X_FORWARDED_FOR", ""))
            if client is not None:
                environ["REMOTE_ADDR"] = client
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        return self.app(environ, start_response)
