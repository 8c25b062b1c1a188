"""Process settings: every `KWAI_BRIDGE_*` environment variable, its default and its
meaning (the README's configuration table is rendered from `SETTINGS_DOC`)."""
from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from kwai_bridge.config import ConfigError
from kwai_bridge.kwai.client import DEFAULT_BASE_URL, GET_PATH, POST_PATH
from kwai_bridge.parsing import FromEnv, Invalid, integer

PREFIX = "KWAI_BRIDGE_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedProxies:
    """Whom to believe about the client's address: a request whose peer is in `networks`
    (the proxies' own addresses), or, the weaker form, `hops` proxies counted from the
    right of X-Forwarded-For whatever the peer (a client that reaches the bridge directly
    then names its own address)."""

    hops: int = 0
    networks: tuple[IPNetwork, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.hops or self.networks)


@dataclass(frozen=True)
class Settings:
    """Process settings; each field is `KWAI_BRIDGE_<FIELD>` (`stores` is a file's path)."""

    database_url: str = field(default="sqlite:///kwai-bridge.db", repr=False)  # may hold a password
    stores: str = ""
    stores_refresh_seconds: float = 2.0
    secret_keys: str = field(default="", repr=False)
    kwai_endpoint: str = DEFAULT_BASE_URL
    max_body_bytes: int = 1048576
    dispatch_concurrency: int = 64
    public_url: str = ""
    trusted_proxies: TrustedProxies = TrustedProxies()
    clicks_per_address: int = 120
    sqlite_synchronous: str = "FULL"
    conversion: str = "worker"
    database_pool_size: int = 16
    lease_seconds: int = 90
    poll_interval: float = 1.0
    body_retention_days: int = 7
    sent_retention_days: int = 30
    kwai_connect_timeout: float = 3.05
    kwai_timeout: float = 10.0
    dispatcher_stale_seconds: int = 60
    metrics: bool = True
    metrics_token: str = field(default="", repr=False)
    alert_webhook_url: str = field(default="", repr=False)  # a Slack-like URL is itself a secret
    log_level: str = "INFO"
    reconcile_minutes: int = 15
    reconcile_backfill_hours: int = 72
    subscription_check_minutes: int = 60

    @property
    def kwai_post_url(self) -> str:
        return self.kwai_endpoint + POST_PATH

    @property
    def kwai_get_url(self) -> str:
        return self.kwai_endpoint + GET_PATH

    def per_store(self, store: Any, name: str) -> int:
        """A store's `reconcile_minutes`, `reconcile_backfill_hours` or
        `subscription_check_minutes`, or this process's setting when the store's is 0."""
        return getattr(store, name) or getattr(self, name)

    def base_url(self, port: int) -> str:
        """Where the bridge is reached, for printed webhook URLs."""
        return self.public_url.rstrip("/") or f"http://localhost:{port}"


def _setting_float(low: float, high: float) -> Callable[[str], float]:
    def parse(v: str) -> float:
        try:
            number = float(v)
        except ValueError:
            number = math.nan
        if not low <= number <= high:  # also refuses nan
            raise Invalid(f"must be a number of seconds from {low:g} to {high:g}")
        return number
    return parse


def _setting_choice(*allowed: str, case: Callable[[str], str] = str.upper) -> Callable[[str], str]:
    """One of `allowed`, written in any case, read in `case`'s."""
    def parse(v: str) -> str:
        if case(v) not in allowed:
            raise Invalid(f"must be one of {', '.join(allowed)}")
        return case(v)
    return parse


def _url(example: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise Invalid(f"must be a URL such as {example}")  # never echoed: may hold a password
        return v.rstrip("/")
    return parse


def _trusted_proxies(v: str) -> TrustedProxies:
    if re.fullmatch(r"\d+", v):
        hops = int(v)
        if hops <= 10:
            return TrustedProxies(hops=hops)
    else:
        try:
            networks = tuple(ipaddress.ip_network(part.strip(), strict=False) for part in v.split(",") if part.strip())
        except ValueError:
            networks = ()
        if networks:
            return TrustedProxies(networks=networks)
    raise Invalid("must be the proxies' addresses or networks separated by commas (10.0.0.2, 10.1.0.0/16), "
                  "or the weaker count of proxy hops from 0 to 10")


def _on_off(v: str) -> bool:
    if v.lower() not in ("on", "off"):
        raise Invalid("must be on or off")
    return v.lower() == "on"


def _token(v: str) -> str:
    if len(v) < 16 or any(c.isspace() for c in v):
        raise Invalid("must be at least 16 characters without spaces")  # never echoed
    return v


def _database_url(v: str) -> str:
    if not re.match(r"^(sqlite:///.+|postgresql(\+psycopg)?://.+)$", v):
        raise Invalid("must be sqlite:///<path> or postgresql://user:password@host/db")
    return str(v)


#: (variable, default, meaning) for every setting, in README order.
_SETTINGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("DATABASE_URL", "sqlite:///kwai-bridge.db", _database_url,
     "outbox database: sqlite:///<path> or postgresql://user:password@host/db"),
    ("STORES", "", str,
     "a stores file (see deploy/stores.example.toml) that `migrate`, `serve` and `worker` import into the "
     "database as they start and on SIGHUP, all or nothing (empty: stores come only from the database: "
     "`kwai-bridge stores import`, the admin API)"),
    ("STORES_REFRESH_SECONDS", "2", _setting_float(0.1, 60),
     "how often each process looks for changed stores in the database (one small query)"),
    ("SECRET_KEYS", "", str,
     "Fernet keys, comma-separated, sealing stored secrets: the first seals, all open "
     "(`kwai-bridge secrets new-key`; empty on SQLite: a key file beside the database; required on PostgreSQL)"),
    ("KWAI_ENDPOINT", DEFAULT_BASE_URL, _url(DEFAULT_BASE_URL),
     "Kwai Event API base: POST goes to <endpoint>/api, GET to <endpoint>/gapi"),
    ("MAX_BODY_BYTES", "1048576", integer(1024, 100 * 1048576),
     "largest webhook body accepted; a larger one is answered 413"),
    ("DISPATCH_CONCURRENCY", "64", integer(1, 256),
     "the most events the worker sends to Kwai at once; below it the worker finds Kwai's pace"),
    ("PUBLIC_URL", "", _url("https://bridge.example.com"),
     "public base URL of the bridge, for printed webhook URLs and the snippet's click endpoint "
     "(empty: http://localhost:<port>, and the snippet is served to loopback hosts only)"),
    ("TRUSTED_PROXIES", "0", _trusted_proxies,
     "the reverse proxies in front: their addresses or networks (10.0.0.2, 10.1.0.0/16), whose "
     "X-Forwarded-For names the client; or, weaker, a count of hops believed from any peer "
     "(0: the peer is the client)"),
    ("CLICKS_PER_ADDRESS", "120", integer(1, 1_000_000),
     "click requests a minute from one client address (an IPv6 /64), counted in the database "
     "across all web processes"),
    ("SQLITE_SYNCHRONOUS", "FULL", _setting_choice("FULL", "NORMAL"),
     "SQLite durability: FULL survives power loss, NORMAL is faster"),
    ("CONVERSION", "worker", _setting_choice("worker", "request", case=str.lower),
     "worker: a webhook is stored as received and answered, and the worker makes its events moments "
     "later, in batches (answers up to half again faster; see Measured); request: converted before the "
     "answer, which counts the events made"),
    ("DATABASE_POOL_SIZE", "16", integer(1, 1000),
     "PostgreSQL connections each process keeps open and reuses (as many again are opened for a burst "
     "and closed after it); every process of every machine counts against the server's max_connections"),
    ("LEASE_SECONDS", "90", integer(1, 3600),
     "how long a worker owns a claimed event before another may take it"),
    ("POLL_INTERVAL", "1.0", _setting_float(0.01, 60),
     "seconds the worker waits when nothing is due"),
    ("BODY_RETENTION_DAYS", "7", integer(0, 3650), "days raw webhook bodies are kept"),
    ("SENT_RETENTION_DAYS", "30", integer(1, 3650),
     "days sent events are kept; a repeated webhook within them is recognised"),
    ("KWAI_CONNECT_TIMEOUT", "3.05", _setting_float(0.1, 60), "seconds to connect to Kwai"),
    ("KWAI_TIMEOUT", "10", _setting_float(0.1, 300), "seconds to wait for Kwai's answer"),
    ("DISPATCHER_STALE_SECONDS", "60", integer(0, 86400),
     "/readyz answers 503 when a dispatcher's heartbeat is older than this many seconds and none "
     "is newer (0: do not check)"),
    ("METRICS", "on", _on_off,
     "on: count webhooks, events and Kwai requests and answer GET /metrics (Prometheus); off: neither"),
    ("METRICS_TOKEN", "", _token,
     "when set, GET /metrics (and `worker --metrics-port`) asks for `Authorization: Bearer <token>`"),
    ("ALERT_WEBHOOK_URL", "", _url("https://hooks.slack.com/services/..."),
     "where the dispatcher POSTs alerts as JSON (Slack-compatible; a store's `alert_webhook_url` "
     "gets that store's too): a store held, dead events, quiet topics, a backlog (empty: none sent)"),
    ("RECONCILE_MINUTES", "15", integer(1, 7 * 24 * 60),
     "minutes between two reconciliation passes over each connected store's orders (a store's "
     "`reconcile_minutes` overrides it)"),
    ("RECONCILE_BACKFILL_HOURS", "72", integer(1, 90 * 24),
     "how far back a store's first reconciliation pass looks (a store's `reconcile_backfill_hours` overrides it)"),
    ("SUBSCRIPTION_CHECK_MINUTES", "60", integer(1, 7 * 24 * 60),
     "minutes between two checks of each connected store's webhook subscriptions (a store's "
     "`subscription_check_minutes` overrides it)"),
    ("LOG_LEVEL", "INFO", _setting_choice("DEBUG", "INFO", "WARNING", "ERROR"),
     "DEBUG, INFO, WARNING or ERROR"),
)
SETTINGS_DOC: tuple[tuple[str, str, str], ...] = tuple(
    (PREFIX + name, default, meaning) for name, default, _, meaning in _SETTINGS)


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Read every KWAI_BRIDGE_* setting; an empty variable means its default."""
    values: dict[str, Any] = {}
    for name, _default, parse, _meaning in _SETTINGS:
        raw = environ.get(PREFIX + name, "").strip()
        if raw:
            try:
                values[name.lower()] = parse(FromEnv(raw))
            except Invalid as exc:
                raise ConfigError(f"{PREFIX}{name}: {exc}", field=PREFIX + name) from None
    settings = Settings(**values)
    if settings.lease_seconds <= settings.kwai_connect_timeout + settings.kwai_timeout:
        raise ConfigError(f"{PREFIX}LEASE_SECONDS: must exceed {PREFIX}KWAI_CONNECT_TIMEOUT + "
                          f"{PREFIX}KWAI_TIMEOUT, or an event still in flight may be sent twice",
                          field=PREFIX + "LEASE_SECONDS")
    longest_pass = settings.poll_interval + settings.kwai_connect_timeout + settings.kwai_timeout
    if settings.dispatcher_stale_seconds and settings.dispatcher_stale_seconds <= longest_pass:
        raise ConfigError(f"{PREFIX}DISPATCHER_STALE_SECONDS: must be 0 or exceed {PREFIX}POLL_INTERVAL + "
                          f"{PREFIX}KWAI_CONNECT_TIMEOUT + {PREFIX}KWAI_TIMEOUT ({longest_pass:g} s), "
                          "the longest a healthy dispatcher may go between two heartbeats",
                          field=PREFIX + "DISPATCHER_STALE_SECONDS")
    return settings


def settings_markdown() -> str:
    """The README table of settings."""
    rows = [f"| `{var}` | {f'`{default}`' if default else '(empty)'} | {meaning} |"
            for var, default, meaning in SETTINGS_DOC]
    return "\n".join(["| Variable | Default | Meaning |", "|---|---|---|", *rows])
