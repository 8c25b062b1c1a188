"""Prometheus metrics: the counters and histograms each process keeps as it works, and
the scrape that adds the gauges read from the database at that moment (`Backlog`).

Under gunicorn's several workers and the dispatcher beside them, prometheus-client's
multiprocess mode keeps each process's values in a file of PROMETHEUS_MULTIPROC_DIR (the
web layer prepares it before any worker starts; see kwai_bridge.web.serving) and a scrape
sums them. Labels take their values from closed sets only (known platforms, an adapter's
topics, Kwai's result codes): nothing a stranger sends makes a series, and no label ever
holds an order id, a click id or a shop's name.
"""
from __future__ import annotations

import hmac
import os
import threading
from socketserver import ThreadingMixIn
from typing import Iterable, Iterator, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

import adapters
from adapters.convert import PRIVACY_ACTIONS
from adapters.values import Conversion
from kwai_bridge.backlog import Backlog
from kwai_bridge.kwai.client import REJECTION_CODES, Delivered, Rejected, SendResult

#: The variable naming the shared directory of multiprocess mode (prometheus-client's).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The label value for anything outside a closed set.
OTHER = "other"
#: The outcomes of a webhook answered 200 (the pipeline's answers).
ANSWERED = frozenset({"queued", "ignored", "failed", "duplicate", "privacy", "pong", "received"})

# This process's own registry: the one a scrape reads when not in multiprocess mode (in
# that mode the values are in the shared directory's files and the registry goes unread).
_PROCESS = CollectorRegistry(auto_describe=True)

WEBHOOKS = Counter("kwai_bridge_webhooks", "Webhooks received, by platform, topic and outcome",
                   ["platform", "topic", "outcome"], registry=_PROCESS)
INGEST_SECONDS = Histogram("kwai_bridge_ingest_seconds", "Time to answer a webhook, body read to answer",
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                           registry=_PROCESS)
EVENTS_CREATED = Counter("kwai_bridge_events_created", "Outbox events created from webhooks, by event and click source",
                         ["event", "click_source"], registry=_PROCESS)
KWAI_REQUESTS = Counter("kwai_bridge_kwai_requests", "Requests to Kwai's Event API, by result code and HTTP status",
                        ["result", "status"], registry=_PROCESS)
SEND_SECONDS = Histogram("kwai_bridge_send_seconds", "Time of one request to Kwai, connect to answer",
                         buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=_PROCESS)

#: Metrics turned off (KWAI_BRIDGE_METRICS=off): nothing is counted, /metrics answers 404.
_state = {"enabled": True}


def set_enabled(enabled: bool) -> None:
    """Count (the default) or not, for this process."""
    _state["enabled"] = enabled


def enabled() -> bool:
    return _state["enabled"]


# -- labels ------------------------------------------------------------------------
def platform_label(platform: str) -> str:
    return platform if platform in adapters.REGISTRY else OTHER


def topic_label(platform: str, topic: str | None) -> str:
    """`topic` when the platform's adapter knows it (a conversion or privacy topic), else "other"."""
    adapter = adapters.REGISTRY.get(platform)
    if adapter is None or topic is None:
        return OTHER
    return topic if topic in adapter.TOPICS or topic in PRIVACY_ACTIONS else OTHER


def outcome_label(status: int, message: str) -> str:
    """What became of a webhook: the pipeline's word for a 200, `refused_<status>` otherwise."""
    if status == 200:
        return message if message in ANSWERED else OTHER
    return f"refused_{status}" if 400 <= status <= 599 else OTHER


def result_label(code: int | None) -> str:
    """Kwai's result code when it is one Kwai documents, "none" without one, else "other"."""
    if code is None:
        return "none"
    return str(code) if code == 1 or code in REJECTION_CODES else OTHER


def status_label(status: int | None) -> str:
    return "none" if status is None else str(status) if 100 <= status <= 599 else OTHER


# -- recording ---------------------------------------------------------------------
def webhook(platform: str, topic: str | None, *, status: int, message: str, seconds: float) -> None:
    """One webhook answered."""
    if _state["enabled"]:
        WEBHOOKS.labels(platform_label(platform), topic_label(platform, topic), outcome_label(status, message)).inc()
        INGEST_SECONDS.observe(seconds)


def events_created(conversions: Iterable[Conversion]) -> None:
    """Events added to the outbox; the click source is where the click id came from."""
    if _state["enabled"]:
        for conversion in conversions:
            EVENTS_CREATED.labels(conversion.event.event_name, _source_label(conversion.click_source)).inc()


def _source_label(source: str | None) -> str:
    # Sources are our own words (`attribute`, `landing_url`, `click_store:<kind>`), never data.
    return source or "none"


def kwai_request(answer: SendResult, *, seconds: float) -> None:
    """One request to Kwai answered (or failed on the way: no status)."""
    if _state["enabled"]:
        outcome = answer.outcome
        code = 1 if isinstance(outcome, Delivered) else outcome.code if isinstance(outcome, Rejected) else None
        KWAI_REQUESTS.labels(result_label(code), status_label(answer.status)).inc()
        SEND_SECONDS.observe(seconds)


# -- the scrape --------------------------------------------------------------------
class _Gauges:
    """The backlog as gauges."""

    def __init__(self, backlog: Backlog) -> None:
        self.backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        events = GaugeMetricFamily("kwai_bridge_outbox_events", "Outbox events by status (not counting sent or skipped)",
                                   labels=["status"])
        for status, count in sorted(self.backlog.events.items()):
            events.add_metric([status], count)
        yield events
        yield GaugeMetricFamily("kwai_bridge_outbox_oldest_due_seconds",
                                "Age of the oldest event due to be sent (0 when none is due)",
                                value=self.backlog.oldest_due_seconds)
        yield GaugeMetricFamily("kwai_bridge_stores_held", "Stores whose events are held: Kwai refused their token",
                                value=self.backlog.stores_held)
        yield GaugeMetricFamily("kwai_bridge_deliveries_received",
                                "Deliveries stored and answered, waiting for the worker's conversion",
                                value=self.backlog.received)
        yield GaugeMetricFamily("kwai_bridge_deliveries_received_oldest_seconds",
                                "How long the oldest delivery waiting for conversion has waited (0 when none)",
                                value=self.backlog.oldest_received_seconds)


class _Together:
    def __init__(self, *sources) -> None:
        self.sources = sources

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def exposition(backlog: Backlog | None = None, *, environ: Mapping[str, str] = os.environ) -> bytes:
    """The text a scrape answers: every process's counters (the shared directory's, in
    multiprocess mode), then the database's gauges when given."""
    directory = environ.get(MULTIPROC_ENV)
    if directory:
        counted = CollectorRegistry()
        MultiProcessCollector(counted, path=directory)
    else:
        counted = _PROCESS
    sources = (counted,) if backlog is None else (counted, _Gauges(backlog))
    return generate_latest(_Together(*sources))


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (any header when no token is set)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def serve(port: int, *, host: str = "0.0.0.0", token: str = "") -> WSGIServer:
    """Answer GET /metrics with this process's counters on `host`:`port`, in a thread (a
    dispatcher run apart from the web app: `kwai-bridge worker --metrics-port`); the
    server's `shutdown()` stops it."""
    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: GET /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [b"Authorization: Bearer <KWAI_BRIDGE_METRICS_TOKEN> required\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [exposition()]

    server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        """No access log: a scrape every few seconds is noise."""
