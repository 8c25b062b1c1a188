"""`kwai-bridge attribution`: where events' click ids came from, and click-store upkeep."""
from __future__ import annotations

import json

import click

from kwai_bridge.cli.base import command_runtime, main, parse_since, store_option, utcnow


@main.group()
def attribution() -> None:
    """Click-id attribution."""


@attribution.command("report")
@store_option(help="one store only")
@click.option("--since", help="ISO date: events received at or after it (default: all)")
@click.option("--json", "as_json", is_flag=True, help='{event name: {"sources": {source: n}, "unattributed": n}}')
def attribution_report(store_id: str | None, since: str | None, as_json: bool) -> None:
    """Per event name, events by the source of their click id, and those unattributed."""
    from kwai_bridge.attribution import report

    runtime = command_runtime()
    found = report(runtime.outbox, store_id=store_id, since=parse_since(since))
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    if not found:
        click.echo("no events")
        return
    for name, entry in found.items():
        attributed = sum(entry["sources"].values())
        click.echo(f"{name}: {attributed} attributed, {entry['unattributed']} unattributed")
        for source, count in sorted(entry["sources"].items(), key=lambda item: (-item[1], item[0])):
            click.echo(f"  {source:<28} {count:>8}")


@attribution.command("prune")
def attribution_prune() -> None:
    """Delete click-store entries older than their store's click_window_days."""
    from kwai_bridge.attribution import ClickStore

    runtime = command_runtime()  # each store's window; no secret needed
    windows = {store.id: store.click_window_days for store in runtime.registry.stores}
    done = ClickStore(runtime.engine).prune(now=utcnow(), windows=windows)
    click.echo(f"{done} expired click(s) deleted")
