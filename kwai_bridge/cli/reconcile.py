"""`kwai-bridge reconcile`: one reconciliation pass now, and `reconcile report`, the
accuracy report (paid orders in the platform against purchases sent, every difference
explained)."""
from __future__ import annotations

import json

import click

from kwai_bridge.cli.base import command_runtime, main, parse_since, store_option, utcnow


@main.group("reconcile", invoke_without_command=True)
@store_option(help="this store only (default: every connected store)")
@click.option("--since", default=None, help="list orders changed since this ISO time (default: the checkpoint)")
@click.pass_context
def reconcile(ctx: click.Context, store_id: str | None, since: str | None) -> None:
    """Run one reconciliation pass now: list the connected stores' orders changed since
    their checkpoint and recover the events their webhooks never brought; print
    {"stores", "orders_seen", "recovered_events", "errors"}."""
    if ctx.invoked_subcommand is not None:
        return
    from kwai_bridge.reconcile import Reconciler
    from kwai_bridge.runtime import build_pipeline

    runtime = command_runtime(secrets=True)
    stores = [s for s in runtime.registry.stores if store_id is None or s.id == store_id]
    reconciler = Reconciler(runtime.engine, build_pipeline(runtime),
                            backfill_hours=runtime.settings.reconcile_backfill_hours)
    report = reconciler.run(stores, now=utcnow(), since=parse_since(since) if since else None)
    if store_id is not None and report.stores == 0:
        report.errors[store_id] = "not connected (run `kwai-bridge stores connect` first)"
    click.echo(json.dumps(report.as_json(), sort_keys=True))
    if report.errors:
        raise SystemExit(1)


@reconcile.command("report")
@store_option(help="this store only")
@click.option("--since", default=None, help="from this day (ISO; default: 30 days ago)")
@click.option("--json", "as_json", is_flag=True, help="a list of {store, day, paid_orders, sent, reasons}")
def reconcile_report(store_id: str | None, since: str | None, as_json: bool) -> None:
    """Per store and day: paid orders in the platform, purchases sent to Kwai, and the
    reasons for every difference (they add up to it exactly)."""
    from datetime import timedelta

    from kwai_bridge.accuracy import accuracy

    runtime = command_runtime()
    now = utcnow()
    start = parse_since(since) if since else now - timedelta(days=30)
    stores = [s for s in runtime.registry.stores if store_id is None or s.id == store_id]
    rows = accuracy(runtime.engine, stores, since=start, now=now)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no paid orders seen in the period (reconciliation lists them: `kwai-bridge reconcile`)")
    for row in rows:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(row.reasons.items())) or "-"
        click.echo(f"{row.store:<20} {row.day}  paid {row.paid_orders:>6}  sent {row.sent:>6}  {reasons}")
