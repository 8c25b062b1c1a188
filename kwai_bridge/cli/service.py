"""The commands that run the service: serve, worker, migrate."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

import click

from kwai_bridge.attribution import ClickStore
from kwai_bridge.cli.base import command_runtime, import_at_start, load_runtime, main, utcnow
from kwai_bridge.config import EXAMPLE_FILE, ConfigError
from kwai_bridge.db import make_engine, migrate as run_migrations
from kwai_bridge.runtime import Runtime
from kwai_bridge.settings import settings_from_env

log = logging.getLogger("kwai_bridge")


# -- serve -------------------------------------------------------------------------
def print_urls(runtime: Runtime, port: int) -> None:
    if runtime.registry.error:
        click.echo(f"Not ready: {runtime.registry.error}")
    if not len(runtime.registry.stores):
        click.echo("No stores yet: add them with `kwai-bridge stores import FILE` (see "
                   f"{EXAMPLE_FILE}) or the admin API; running processes see them within seconds.")
        return
    click.echo("Webhook URLs to paste into each store's admin:")
    for store_id, platform, url in runtime.webhook_urls(port):
        click.echo(f"  {store_id:<20} {platform:<12} {url}")


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8000")), show_default="8000 or $PORT")
@click.option("--workers", type=int, default=None, help="gunicorn worker processes (default 2 x cores)")
@click.option("--with-worker", is_flag=True, help="also run the dispatcher in a child process")
def serve(host: str, port: int, workers: int | None, with_worker: bool) -> None:
    """Serve the webhook routes with gunicorn."""
    runtime = load_runtime()  # migrates SQLite, checks PostgreSQL's schema, before any fork
    import_at_start(runtime)
    runtime.engine.dispose()
    print_urls(runtime, port)
    # gunicorn's master runs in a fresh interpreter (same process id, so signals reach
    # it). Its gevent workers patch the standard library after the fork, and what this
    # command has imported by now (the database driver, requests) would keep the
    # blocking originals: psycopg, for one, picks how it waits when it is imported.
    argv = [sys.executable, "-P", "-m", "kwai_bridge.web", "--host", host, "--port", str(port),
            "--log-level", runtime.settings.log_level]
    if workers:
        argv += ["--workers", str(workers)]
    if with_worker:
        argv.append("--with-worker")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


# -- worker ------------------------------------------------------------------------
@main.command()
@click.option("--once", is_flag=True, help="send everything due, then exit")
@click.option("--metrics-port", type=int, default=None,
              help="answer GET /metrics with this dispatcher's counters on this port (a dispatcher run apart "
                   "from `serve`; under `serve --with-worker` they are in serve's /metrics)")
@click.option("--metrics-host", default="0.0.0.0", show_default=True, help="the address --metrics-port listens on")
def worker(once: bool, metrics_port: int | None, metrics_host: str) -> None:
    """Convert the received webhooks and deliver the outbox to Kwai until SIGTERM
    (finishing what is in flight)."""
    from kwai_bridge import metrics
    from kwai_bridge.alerting import AlertSender
    from kwai_bridge.conversion import Converter
    from kwai_bridge.heartbeat import Heartbeats
    from kwai_bridge.runtime import build_pipeline
    from kwai_bridge.worker import Dispatcher

    runtime = command_runtime(secrets=True)
    import_at_start(runtime)
    metrics.set_enabled(runtime.settings.metrics)
    if metrics_port is not None and runtime.settings.metrics:
        metrics.serve(metrics_port, host=metrics_host, token=runtime.settings.metrics_token)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # The import runs beside the loop, not inside the handler: the handler may land
        # while this thread holds the database's writer lock.
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(
            target=import_at_start, args=(runtime,), kwargs={"on_signal": True}, daemon=True).start())
    s = runtime.settings
    dispatcher = Dispatcher(outbox=runtime.outbox, registry=runtime.registry, client=runtime.kwai_client(),
                            concurrency=s.dispatch_concurrency, lease_seconds=s.lease_seconds,
                            heartbeats=Heartbeats(runtime.engine))
    log.info("dispatcher started (concurrency %d)", s.dispatch_concurrency)
    pruner = threading.Thread(target=_prune_loop, args=(runtime, stop), daemon=True)
    alerts = AlertSender(runtime.engine, runtime.registry, url=s.alert_webhook_url, clock=utcnow)
    pipeline = build_pipeline(runtime)  # the converter's and reconciliation's
    jobs = _platform_jobs(runtime, alerts, pipeline)
    # The deliveries the web workers stored as received become events here: beside the
    # dispatcher, or with --once all of them before it.
    converter = Converter(pipeline, clock=utcnow)
    converting = []
    if once:
        converter.drain()
    else:
        converting = converter.start(stop)
        pruner.start()
        alerts.start()
        jobs.start()
    tally = dispatcher.run(stop=stop, once=once, poll_interval=s.poll_interval)
    for thread in converting:
        thread.join()
    jobs.stop()
    alerts.stop()
    log.info("dispatcher stopped: %s", tally)
    if once:
        click.echo(json.dumps(tally, sort_keys=True))


def _platform_jobs(runtime: Runtime, alerts, pipeline):
    """The connected stores' subscription watch and reconciliation, beside the dispatcher."""
    from kwai_bridge.reconcile import Reconciler
    from kwai_bridge.watch import PlatformJobs

    s = runtime.settings
    reconciler = Reconciler(runtime.engine, pipeline, backfill_hours=s.reconcile_backfill_hours)
    return PlatformJobs(engine=runtime.engine, registry=runtime.registry, reconciler=reconciler, settings=s,
                        tell=lambda message, store: alerts.tell(message, store_url=store.alert_webhook_url),
                        clock=utcnow)


def _prune_loop(runtime: Runtime, stop: threading.Event) -> None:
    s = runtime.settings
    while not stop.is_set():
        try:
            now = utcnow()
            pruned = runtime.outbox.prune(now=now, body_days=s.body_retention_days,
                                          sent_days=s.sent_retention_days)
            pruned["clicks"] = ClickStore(runtime.engine).prune(
                now=now, windows={st.id: st.click_window_days for st in runtime.registry.stores})
            if any(pruned.values()):
                log.info("retention: %s", pruned)
        except Exception:
            log.exception("retention pass failed; trying again later")
        stop.wait(3600)


# -- migrate ---------------------------------------------------------------------
@main.command()
def migrate() -> None:
    """Create or upgrade the database schema in place, then import KWAI_BRIDGE_STORES if set."""
    try:
        settings = settings_from_env(os.environ)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    version = run_migrations(make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous))
    click.echo(f"schema at version {version}")
    if settings.stores:
        import_at_start(load_runtime())
