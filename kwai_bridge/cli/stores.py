"""`kwai-bridge stores` and `kwai-bridge secrets`: the stores file as an import format,
the stores in the database, and the keys that seal their secrets."""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import click

from kwai_bridge.audit import CLI_ACTOR
from kwai_bridge.catalog import StoreRecord, import_file, store_fields
from kwai_bridge.cli.base import command_runtime, import_at_start, main, utcnow
from kwai_bridge.config import SECRET_FIELDS, ConfigError, parse_entries, read_stores_file
from kwai_bridge.runtime import webhook_url
from kwai_bridge.sealing import new_key
from kwai_bridge.settings import settings_from_env


@main.group()
def stores() -> None:
    """The stores: kept in the database, imported from and exported to a stores file."""


def _file_argument(path: str | None) -> str:
    path = path or settings_from_env(os.environ).stores
    if not path:
        raise click.UsageError("name a stores file, or set KWAI_BRIDGE_STORES")
    return path


@stores.command("check")
@click.argument("path", required=False)
def stores_check(path: str | None) -> None:
    """Validate a stores file (default: KWAI_BRIDGE_STORES) without writing anything."""
    path = _file_argument(path)
    try:
        parsed = parse_entries(read_stores_file(path), environ=os.environ, source=path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    base = settings_from_env(os.environ).base_url(8000)
    for config, _ in parsed:
        click.echo(f"ok  {config.id:<20} {config.platform:<12} {webhook_url(base, config)}")
    click.echo(f"{len(parsed)} store(s) valid")


@stores.command("import")
@click.argument("path")
@click.option("--prune", is_flag=True, help="also remove the stores the file does not name")
@click.option("--force", is_flag=True, help="prune stores even when events of theirs wait to be sent")
def stores_import(path: str, prune: bool, force: bool) -> None:
    """Check every store of a file, then create or change them all in one transaction;
    nothing changes if any store is wrong."""
    runtime = command_runtime(secrets=True)
    try:
        report = import_file(runtime.catalog, path, environ=os.environ, actor=CLI_ACTOR, now=utcnow(), prune=prune,
                             force=force)
    except ConfigError as exc:
        raise click.ClickException(f"nothing imported:\n{exc}") from exc
    click.echo(json.dumps(report.as_json(), sort_keys=True))


@stores.command("reimport", hidden=True)
def stores_reimport() -> None:
    """Import KWAI_BRIDGE_STORES by the rule of a SIGHUP: a wrong file is logged and
    changes nothing (what `serve`'s master runs on SIGHUP)."""
    import_at_start(command_runtime(secrets=True), on_signal=True)


@stores.command("export")
@click.option("--with-secrets", is_flag=True, help="write secrets in clear (else ${NAME} references or masked)")
def stores_export(with_secrets: bool) -> None:
    """Print every store as a stores file."""
    runtime = command_runtime(secrets=with_secrets)
    records = runtime.catalog.records()
    click.echo(f"# {len(records)} store(s) exported {utcnow().isoformat(timespec='seconds')}")
    if not with_secrets:
        click.echo("# secrets: ${NAME} where they were imported so, else masked (…last 4): fill them in")
    for record in records:
        click.echo("\n[[stores]]")
        for name, value in _exported(record, with_secrets=with_secrets).items():
            click.echo(f"{name} = {toml_value(value)}")


def _exported(record: StoreRecord, *, with_secrets: bool) -> dict[str, Any]:
    # Without --with-secrets the catalog was opened without keys: its secrets are hints.
    out = store_fields(record.config, secrets="clear")
    if with_secrets:
        return out
    for name in SECRET_FIELDS:
        ref = record.refs.get(name)
        if isinstance(ref, str):
            out[name] = "${%s}" % ref
        elif isinstance(ref, list):
            out[name] = ["${%s}" % r if r else v for r, v in zip(ref, out[name])]
    return out


def toml_value(value: Any) -> str:
    """A field's value in TOML: strings in JSON's escapes (valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


@stores.command("list")
@click.option("--json", "as_json", is_flag=True)
def stores_list(as_json: bool) -> None:
    """The stores in the database with their webhook URLs."""
    from kwai_bridge.links import Links

    runtime = command_runtime()
    base = runtime.settings.base_url(8000)
    links = Links(runtime.engine)
    linked = links.all()
    rows = [{"id": r.config.id, "platform": r.config.platform, "shop": r.config.shop,
             "webhook_url": webhook_url(base, r.config), "version": r.version,
             "updated_at": r.updated_at.isoformat().replace("+00:00", "Z"),
             "connection": links.status_of(r.config, linked.get(r.config.id))} for r in runtime.catalog.records()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']:<20} {row['platform']:<12} {row['webhook_url']}  ({row['connection']})")
    click.echo(f"{len(rows)} store(s)")


def _store_or_fail(runtime, store_id: str):
    store = runtime.registry.get(store_id)
    if store is None:
        raise click.ClickException(f"no store {store_id!r} (see `kwai-bridge stores list`)")
    return store


@stores.command("connect")
@click.argument("store_id")
def stores_connect(store_id: str) -> None:
    """Create (or repair) every webhook subscription the store needs on its platform,
    pointing at KWAI_BRIDGE_PUBLIC_URL; print {"created", "ok", "fixed", "errors"}."""
    from kwai_bridge.connect import ConnectRefused, run_connect
    from kwai_bridge.links import Links

    runtime = command_runtime(secrets=True)
    store = _store_or_fail(runtime, store_id)
    try:
        report = run_connect(store, links=Links(runtime.engine), public_url=runtime.settings.public_url, now=utcnow())
    except ConnectRefused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(report.as_json(), sort_keys=True))
    if report.errors:
        raise SystemExit(1)


@stores.command("disconnect")
@click.argument("store_id")
def stores_disconnect(store_id: str) -> None:
    """Remove the bridge's own webhook subscriptions of the store (no other)."""
    from kwai_bridge.connect import ConnectRefused, run_disconnect
    from kwai_bridge.links import Links

    runtime = command_runtime(secrets=True)
    store = _store_or_fail(runtime, store_id)
    try:
        done = run_disconnect(store, links=Links(runtime.engine))
    except ConnectRefused as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(done, sort_keys=True))
    if done["errors"]:
        raise SystemExit(1)


@main.group()
def secrets() -> None:
    """The keys that seal stored secrets (KWAI_BRIDGE_SECRET_KEYS)."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new key (put it first in KWAI_BRIDGE_SECRET_KEYS, then run `secrets rotate`)."""
    click.echo(new_key())


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Seal every stored secret again with the first key of KWAI_BRIDGE_SECRET_KEYS."""
    runtime = command_runtime(secrets=True)
    count = runtime.catalog.reseal_all(actor=CLI_ACTOR, now=utcnow())
    click.echo(f"{count} store(s) sealed with the first key; older keys may now be removed")
