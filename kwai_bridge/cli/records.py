"""Commands over what the bridge holds and sends: events, deliveries, test events."""
from __future__ import annotations

import json
import uuid

import click

from kwai_bridge.cli.base import load_runtime, main, parse_since, utcnow
from kwai_bridge.db import EventStatus
from kwai_bridge.records import event_json

#: Statuses a failed attempt leaves an event in: `events list` shows their last error.
_SHOW_ERROR = (EventStatus.DEAD, EventStatus.HELD, EventStatus.PENDING)


@main.group()
def events() -> None:
    """Events in the outbox."""


@events.command("list")
@click.option("--status", type=click.Choice([status.value for status in EventStatus]))
@click.option("--store", "store_id")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def events_list(status: str | None, store_id: str | None, limit: int, as_json: bool) -> None:
    """List events, newest first."""
    runtime = load_runtime()
    rows = runtime.outbox.list_events(status=status, store_id=store_id, limit=limit)
    if as_json:
        click.echo(json.dumps([event_json(r) for r in rows], indent=2))
        return
    for r in rows:
        error = f"  {r.last_error}" if r.last_error and r.status in _SHOW_ERROR else ""
        click.echo(f"{r.id:>8} {r.store_id:<16} {r.status:<12} {r.event_name:<28} {r.business_key}{error}")
    counts = runtime.outbox.counts(store_id=store_id)
    click.echo("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@events.command("replay")
@click.option("--id", "event_id", type=int)
@click.option("--store", "store_id")
@click.option("--result", type=int, help="only events that Kwai answered with this result code")
def events_replay(event_id: int | None, store_id: str | None, result: int | None) -> None:
    """Put dead or held events back to pending."""
    runtime = load_runtime()
    count = runtime.outbox.replay(now=utcnow(), event_id=event_id, store_id=store_id, result=result)
    click.echo(f"{count} event(s) back to pending")


@main.group()
def deliveries() -> None:
    """Webhook deliveries as received."""


@deliveries.command("reprocess")
@click.option("--since", help="ISO date; default: every kept body")
@click.option("--store", "store_id")
def deliveries_reprocess(since: str | None, store_id: str | None) -> None:
    """Convert again the deliveries whose conversion failed (raw bodies are kept 7 days)."""
    from kwai_bridge.runtime import build_pipeline

    runtime = load_runtime()
    done = build_pipeline(runtime).reprocess(since=parse_since(since), store_id=store_id, now=utcnow())
    click.echo(json.dumps(done, sort_keys=True))


@main.command("send-test-event")
@click.option("--store", "store_id", required=True)
@click.option("--clickid", required=True, help="the test click id shown in Kwai's Test Events tab")
@click.option("--event", "event_name", default="EVENT_PURCHASE", show_default=True)
def send_test_event(store_id: str, clickid: str, event_name: str) -> None:
    """Send one event now with trackFlag true; exit 0 only when Kwai answers result 1."""
    from kwai_bridge.kwai.client import Delivered
    from kwai_bridge.kwai.events import EventError, KwaiEvent

    runtime = load_runtime()
    store = runtime.registry.stores.get(store_id)
    if store is None:
        raise click.ClickException(runtime.registry.error or f"no store {store_id!r} in the stores file")
    event = KwaiEvent(event_name=event_name, event_time=utcnow(), third_party=store.platform,
                      idempotency_key=f"test:{uuid.uuid4().hex}", click_id=clickid)
    client = runtime.kwai_client()
    try:
        result = client.send(event, pixel_id=store.pixel_id, access_token=store.access_token,
                             track_flag=True, method=store.send_method)
    except EventError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
    click.echo(f"HTTP {result.status}: {result.body}")
    if not isinstance(result.outcome, Delivered):
        raise click.ClickException(f"Kwai did not accept the event: {result.outcome}")
    click.echo("Kwai accepted the test event: check the Test Events tab.")
