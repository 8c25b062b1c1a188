"""Commands over what the bridge holds and sends: events, deliveries, test events."""
from __future__ import annotations

import json

import click

from kwai_bridge.cli.base import command_runtime, main, parse_since, store_option, utcnow
from kwai_bridge.db import EventStatus
from kwai_bridge.audit import CLI_ACTOR
from kwai_bridge.records import Records, event_json

#: Statuses a failed attempt leaves an event in: `events list` shows their last error.
_SHOW_ERROR = (EventStatus.DEAD, EventStatus.HELD, EventStatus.PENDING)


@main.group()
def events() -> None:
    """Events in the outbox."""


@events.command("list")
@click.option("--status", type=click.Choice([status.value for status in EventStatus]))
@store_option()
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def events_list(status: str | None, store_id: str | None, limit: int, as_json: bool) -> None:
    """List events, newest first."""
    runtime = command_runtime()
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
@store_option()
@click.option("--result", type=int, help="only events that Kwai answered with this result code")
def events_replay(event_id: int | None, store_id: str | None, result: int | None) -> None:
    """Put dead or held events back to pending (and, by --id, a pending one due now);
    recorded in the audit trail."""
    runtime = command_runtime()
    count = Records(runtime.engine).replay(now=utcnow(), stores=None, event_id=event_id, store_id=store_id,
                                           result=result, actor=CLI_ACTOR)
    click.echo(f"{count} event(s) back to pending")


@main.group()
def deliveries() -> None:
    """Webhook deliveries as received."""


@deliveries.command("reprocess")
@click.option("--since", help="ISO date; default: every kept body")
@store_option()
def deliveries_reprocess(since: str | None, store_id: str | None) -> None:
    """Convert again the deliveries whose conversion failed (raw bodies are kept 7 days)."""
    from kwai_bridge.runtime import build_pipeline

    runtime = command_runtime()  # converting needs no secret
    done = build_pipeline(runtime).reprocess(since=parse_since(since), store_id=store_id, now=utcnow())
    click.echo(json.dumps(done, sort_keys=True))


@main.command("send-test-event")
@store_option(required=True)
@click.option("--clickid", required=True, help="the test click id shown in Kwai's Test Events tab")
@click.option("--event", "event_name", default="EVENT_PURCHASE", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON (exit code as without)")
def send_test_event(store_id: str, clickid: str, event_name: str, as_json: bool) -> None:
    """Send one event now with trackFlag true; exit 0 only when Kwai answers result 1."""
    from kwai_bridge.kwai.events import EventError
    from kwai_bridge.testevent import send_test_event as send

    runtime = command_runtime(secrets=True)
    store = runtime.registry.get(store_id)
    if store is None:  # in the outbox only, or its secrets do not open with the keys
        raise click.ClickException(runtime.registry.error or f"store {store_id!r} is no longer configured")
    try:
        with runtime.kwai_client() as client:
            found = send(client, store, clickid=clickid, event_name=event_name, now=utcnow())
    except EventError as exc:
        raise click.BadParameter(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    elif found.ok:
        click.echo(f"{found.message} (sent to {found.endpoint}).")
    if not found.ok:
        hint = f"\n{found.hint}" if found.hint else ""
        raise click.ClickException(f"{found.message}, from {found.endpoint}{hint}")
