"""From a received webhook to rows in the outbox: find the store, verify, parse,
convert, store. One call per request; no Kwai call ever happens here.

With `convert_later` (`KWAI_BRIDGE_CONVERSION=worker`, the default) the request checks
the signature and the headers, stores the delivery as `received` with its body unread,
and answers; the worker reads and converts it moments later (`convert_received`), in
batches: a webhook costs its web worker a third less, and a burst of orders is answered
at the pace of the disk, not of the conversion. A body that converting at the request
would refuse (not JSON, not a body of its topic, naming another shop) is stored failed
with that reason and yields no event; privacy topics are read and done at once.

Every decision is returned as an `Answer` (status code, short message, JSON detail);
the web layer only turns it into an HTTP response.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Sequence

import adapters
from adapters import Adapter
from adapters.convert import store_choices
from adapters.signing import normalise_shop
from adapters.values import AdapterError, Conversion, Notification, ShopMismatchError, WebhookRequest
from kwai_bridge import metrics
from kwai_bridge.catalog import StoreRegistry
from kwai_bridge.config import StoreConfig
from kwai_bridge.db import DeliveryOutcome, database_errors, database_unavailable
from kwai_bridge.outbox import AcceptResult, Converted, DeliveryRow, Outbox

log = logging.getLogger(__name__)
#: Received deliveries converted per transaction by `convert_received`.
CONVERT_BATCH = 100


@dataclass(frozen=True)
class Answer:
    """What to answer the platform: an HTTP status and a small JSON body."""

    status: int
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    #: The notification's topic once parsed (for metrics; not part of the body).
    topic: str | None = None

    def body(self) -> dict[str, Any]:
        return {"status": self.message, **self.detail}


#: Hook for attribution: given the store, its conversions and the time, return them
#: with click ids filled in where other evidence has one (see kwai_bridge.attribution).
Resolver = Callable[[StoreConfig, Sequence[Conversion], datetime], Sequence[Conversion]]


def _no_resolution(store: StoreConfig, conversions: Sequence[Conversion], now: datetime) -> Sequence[Conversion]:
    return conversions


class Pipeline:
    """Turns webhook requests into outbox rows."""

    def __init__(self, *, registry: StoreRegistry, outbox: Outbox,
                 resolver: Resolver = _no_resolution, privacy=None, convert_later: bool = False) -> None:
        self.registry = registry
        self.outbox = outbox
        self.resolver = resolver
        self.privacy = privacy
        self.convert_later = convert_later

    # -- store lookup ---------------------------------------------------------------
    def find_store(self, platform: str, store_id: str | None, request: WebhookRequest) -> StoreConfig | Answer:
        adapter = adapters.REGISTRY.get(platform)
        if adapter is None:
            return Answer(404, "unknown platform", {"platform": platform})
        if store_id is not None:
            store = self.registry.get(store_id)
            if store is None or store.platform != platform:
                return Answer(404, "unknown store", {"store": store_id})
            return store
        shop = request.header(adapter.SHOP_HEADER)
        store = self.registry.find_by_shop(platform, shop) if shop else None
        if store is None:
            return Answer(404, "unknown store", {"shop_header": adapter.SHOP_HEADER})
        return store

    # -- the request path -----------------------------------------------------------
    def handle(self, platform: str, store_id: str | None, request: WebhookRequest, *, now: datetime,
               at_once: bool = False) -> Answer:
        """Answer one webhook; `at_once` converts it in this call even under `convert_later`
        (reconciliation, which reports the events it recovered)."""
        adapter = adapters.REGISTRY.get(platform)
        if store_id is None and adapter is not None and adapter.is_ping(request):
            # WooCommerce's ping carries no header naming the site: on the shared route it
            # cannot be matched to a store, and it must get exactly 200 all the same.
            log.info("%s webhook ping answered on the shared route", platform)
            return Answer(200, "pong")
        found = self.find_store(platform, store_id, request)
        if isinstance(found, Answer):
            log.info("webhook refused: %s %s (%s)", platform, store_id or "-", found.message)
            return found
        store = found
        if adapter.is_ping(request):
            log.info("store %s: webhook ping answered", store.id)
            return Answer(200, "pong")
        later = self.convert_later and not at_once
        try:
            adapter.verify(request, secrets=store.webhook_secrets)
            if store_id is not None and adapter.APP_WIDE_SECRET:
                # One app secret signs every store of an app: the signature alone does not
                # tell stores apart, so the shop header must name this store.
                if normalise_shop(request.header(adapter.SHOP_HEADER)) != normalise_shop(store.shop):
                    raise ShopMismatchError(f"{adapter.SHOP_HEADER} does not name store {store.id}")
            # Converted later, the body is read by the worker (a body it refuses is stored
            # failed, with the reason); a privacy duty is done now, so its body is read now.
            notification = adapter.peek(request) if later else adapter.parse(request)
            if later and notification.kind == "privacy":
                notification = adapter.parse(request)
        except AdapterError as exc:
            log.warning("store %s: webhook refused with %s: %s", store.id, exc.status_code, exc)
            return Answer(exc.status_code, _reason(exc), {"store": store.id})
        key = adapter.delivery_key(request, notification)
        # The platforms sign the body only: a body is accepted once per store, whatever
        # delivery id or topic it comes back with (one hash over bytes already in memory).
        body_sha256 = hashlib.sha256(request.body).hexdigest()
        if notification.kind == "privacy":
            answer = self._privacy(store, adapter, notification, key, body_sha256, now)
        elif later:
            answer = self._store_received(store, adapter, notification, request, key, body_sha256, now)
        else:
            answer = self._convert_and_store(store, adapter, notification, request, key, body_sha256, now)
        return replace(answer, topic=notification.topic)

    def _convert_and_store(self, store: StoreConfig, adapter: Adapter, notification: Notification,
                           request: WebhookRequest, key: str, body_sha256: str, now: datetime) -> Answer:
        error = None
        conversions: Sequence[Conversion] = ()
        try:
            conversions = self._conversions(store, adapter, notification, now)
        except database_errors():
            # The database failed (the click store's look-up): not the body's fault. Nothing
            # is kept, the answer is a 503, and the platform's retry converts it once the
            # database answers; stored as failed it would wait for a manual reprocess.
            raise
        except Exception as exc:  # a conversion fault: keep the body, answer 200, reprocess later
            error = storable_text(f"{exc.__class__.__name__}: {exc}")
            log.error("store %s: %s %s conversion failed, stored for reprocessing: %s",
                      store.id, notification.platform, notification.topic, error)
        outcome = DeliveryOutcome.FAILED if error else (DeliveryOutcome.QUEUED if conversions else DeliveryOutcome.IGNORED)
        result = self.outbox.accept(
            store_id=store.id, platform=notification.platform, topic=notification.topic,
            delivery_key=key, received_at=now, body=request.body,
            headers=kept_headers(adapter, request), conversions=conversions,
            outcome=outcome, error=error, body_sha256=body_sha256,
            # An order created paid: the platform may send its body byte for byte under
            # several order topics; a later one still adds what it yields and the first
            # did not (see BODY_DECIDES_TOPICS), so that no conversion is lost.
            body_decides=notification.topic in adapter.BODY_DECIDES_TOPICS,
        )
        metrics.events_created(result.added)
        if result.duplicate:
            log.info("store %s: duplicate delivery %s ignored, %d event(s) added", store.id, key[:32],
                     result.created)
            return Answer(200, "duplicate", {"events": result.created} if result.created else {})
        log.info("store %s: %s %s -> %s, %d event(s)", store.id, notification.platform,
                 notification.topic, outcome, result.created)
        return Answer(200, outcome, {"events": result.created})

    def _store_received(self, store: StoreConfig, adapter: Adapter, notification: Notification,
                        request: WebhookRequest, key: str, body_sha256: str, now: datetime) -> Answer:
        """Store the verified delivery for the worker to convert; its events come later."""
        result = self.outbox.accept(
            store_id=store.id, platform=notification.platform, topic=notification.topic,
            delivery_key=key, received_at=now, body=request.body, headers=kept_headers(adapter, request),
            conversions=(), outcome=DeliveryOutcome.RECEIVED, body_sha256=body_sha256)
        if result.duplicate:
            if notification.topic in adapter.BODY_DECIDES_TOPICS:
                # The body may have come first under another topic and owe this one's
                # events (see BODY_DECIDES_TOPICS): that rare case is converted at once.
                try:
                    notification = adapter.parse(request)
                except AdapterError:
                    # It owes no event: the first delivery of its body is refused by the
                    # worker's conversion, with the reason.
                    return Answer(200, "duplicate")
                return self._convert_and_store(store, adapter, notification, request, key, body_sha256, now)
            log.info("store %s: duplicate delivery %s ignored", store.id, key[:32])
            return Answer(200, "duplicate")
        log.info("store %s: %s %s received", store.id, notification.platform, notification.topic)
        return Answer(200, DeliveryOutcome.RECEIVED)

    # -- conversion in the worker ---------------------------------------------------
    def convert_received(self, *, now: datetime, limit: int = CONVERT_BATCH) -> int:
        """Convert up to `limit` received deliveries, oldest first, and store their events
        in one transaction; return how many were taken (0: none is waiting).

        A conversion fault stores the delivery as failed (for `reprocess`), as on the
        request path. A database error raises with nothing stored: the deliveries stay
        received and the next call converts them. A batch whose values the database
        refuses is stored one by one, the refused delivery as failed with the reason:
        one poison delivery must not stop every other behind it."""
        converted: list[Converted] = []
        try:
            with self.outbox.receiving(limit=limit) as batch:
                converted = [self._convert_delivery(delivery, now) for delivery in batch]
                results = self.outbox.settle_received(converted, now=now) if converted else []
        except Exception as exc:
            if database_unavailable(exc) or not converted:
                raise
            results = self._one_by_one(converted, now)
        for item, result in zip(converted, results):
            metrics.events_created(result.added)
            if not result.duplicate:
                log.info("store %s: delivery %d converted -> %s, %d event(s)", item.store_id, item.delivery_id,
                         item.outcome, result.created)
        return len(converted)

    def _one_by_one(self, converted: list[Converted], now: datetime) -> list[AcceptResult]:
        results = []
        for item in converted:
            try:
                results += self.outbox.settle_received([item], now=now)
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                reason = str(exc).split("\n", 1)[0]
                error = storable_text(f"not stored: {exc.__class__.__name__}: {reason}")
                log.error("store %s: delivery %d %s", item.store_id, item.delivery_id, error)
                results += self.outbox.settle_received(
                    [replace(item, outcome=DeliveryOutcome.FAILED, conversions=(), error=error)], now=now)
        return results

    def _convert_delivery(self, delivery: DeliveryRow, now: datetime) -> Converted:
        store = self.registry.get(delivery.store_id)
        if store is None:
            error = f"store {delivery.store_id} is not configured any more"
            log.error("delivery %d not converted: %s", delivery.id, error)
            return Converted(delivery.id, delivery.store_id, delivery.platform, DeliveryOutcome.FAILED, error=error)
        if delivery.body is None:
            # A privacy request removed it before it was converted: the customer's data
            # stay out of the events too.
            return Converted(delivery.id, store.id, delivery.platform, DeliveryOutcome.IGNORED,
                             error="its body was removed by a privacy request before conversion")
        try:
            adapter = adapters.REGISTRY[delivery.platform]
            request = WebhookRequest.build(delivery.headers or {}, delivery.body)
            conversions = tuple(self._conversions(store, adapter, adapter.parse(request), now))
        except database_errors():
            raise
        except AdapterError as exc:
            # A signed body the request path answered before reading it, and that converting
            # at the request would have refused with this status: stored failed, no events.
            error = storable_text(f"refused ({exc.status_code}): {_reason(exc)}")
            log.warning("store %s: delivery %d %s", store.id, delivery.id, error)
            return Converted(delivery.id, store.id, delivery.platform, DeliveryOutcome.FAILED, error=error)
        except Exception as exc:  # a conversion fault: kept for reprocessing, as on the request path
            error = storable_text(f"{exc.__class__.__name__}: {exc}")
            log.error("store %s: delivery %d conversion failed, stored for reprocessing: %s",
                      store.id, delivery.id, error)
            return Converted(delivery.id, store.id, delivery.platform, DeliveryOutcome.FAILED, error=error)
        outcome = DeliveryOutcome.QUEUED if conversions else DeliveryOutcome.IGNORED
        return Converted(delivery.id, store.id, delivery.platform, outcome, conversions)

    def _conversions(self, store: StoreConfig, adapter: Adapter, notification: Notification,
                     now: datetime) -> Sequence[Conversion]:
        """The store's conversions of a notification: converted, kept to the events the store
        sends (with its mapping id), then attributed."""
        options = store.conversion_options()
        chosen = store_choices(adapter.to_conversions(notification, options=options), options)
        return self.resolver(store, chosen, now)

    def _privacy(self, store: StoreConfig, adapter: Adapter, notification: Notification, key: str,
                 body_sha256: str, now: datetime) -> Answer:
        request = adapter.privacy_request(notification)
        # A body already received does nothing again: a captured redaction replayed under a
        # new delivery id (after the shop re-installed, say) must not redact anew.
        if self.outbox.seen(store.id, delivery_key=key, body_sha256=body_sha256):
            log.info("store %s: duplicate privacy delivery %s ignored", store.id, key[:32])
            return Answer(200, "duplicate")
        # The duty first, then the record of the delivery: if the duty fails the answer is
        # a 5xx and the platform's retry does it (redaction is idempotent), rather than a
        # recorded delivery whose retry would be dropped as a duplicate.
        if request is not None and self.privacy is not None:
            self.privacy.apply(store, request, now=now)
        # The body is not kept (it names the customer), its hash is.
        result = self.outbox.accept(
            store_id=store.id, platform=notification.platform, topic=notification.topic,
            delivery_key=key, received_at=now, body=b"", headers={}, conversions=(), outcome=DeliveryOutcome.PRIVACY,
            body_sha256=body_sha256,
        )
        if result.duplicate:
            return Answer(200, "duplicate")
        log.info("store %s: privacy topic %s handled", store.id, notification.topic)
        return Answer(200, "privacy", {"topic": notification.topic})

    # -- reprocessing ---------------------------------------------------------------
    def reprocess(self, *, since: datetime, store_id: str | None, now: datetime) -> dict[str, int]:
        """Convert again the failed deliveries whose raw body is still kept."""
        done = {"reprocessed": 0, "failed": 0, "skipped": 0}
        for delivery in self.outbox.deliveries_for_reprocess(since=since, store_id=store_id):
            store = self.registry.get(delivery.store_id)
            if store is None:
                done["skipped"] += 1
                continue
            adapter = adapters.REGISTRY[delivery.platform]
            request = WebhookRequest.build(delivery.headers or {}, delivery.body or b"")
            try:
                notification = adapter.parse(request)
                conversions = self._conversions(store, adapter, notification, now)
            except Exception as exc:
                log.error("store %s: delivery %s still fails: %s", store.id, delivery.id, exc)
                done["failed"] += 1
                continue
            self.outbox.add_conversions(delivery.id, store_id=store.id, platform=delivery.platform,
                                        conversions=conversions, outcome=DeliveryOutcome.REPROCESSED, now=now)
            done["reprocessed"] += 1
        return done


def kept_headers(adapter: Adapter, request: WebhookRequest) -> dict[str, str]:
    """The headers to keep with a delivery so that it can be reprocessed (never the signature)."""
    return {h: request.headers[h] for h in adapter.KEPT_HEADERS if h in request.headers}


def storable_text(value: str) -> str:
    """`value` as text any database stores: a lone surrogate and a NUL written as escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _reason(exc: AdapterError) -> str:
    return str(exc) or exc.__class__.__doc__ or exc.__class__.__name__

