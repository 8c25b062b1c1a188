"""`kwai-bridge privacy`: answer a customer's data request."""
from __future__ import annotations

import json

import click

from adapters.signing import sha256_email, sha256_phone
from kwai_bridge.cli.base import command_runtime, main, store_option


@main.group()
def privacy() -> None:
    """Privacy requests (redaction itself happens when the platform's webhook arrives)."""


@privacy.command("export")
@store_option(required=True, help="a store in the database, or one removed whose events remain")
@click.option("--customer", "customer_id", help="the platform's customer id")
@click.option("--email", help="hashed at once; never printed")
@click.option("--phone", help="with the country code; hashed at once")
@click.option("--order", "order_ids", multiple=True, help="an order id (repeatable)")
def privacy_export(store_id: str, customer_id: str | None, email: str | None, phone: str | None,
                   order_ids: tuple[str, ...]) -> None:
    """Print (JSON) what the bridge holds about one customer of a store."""
    from kwai_bridge.privacy import Privacy, seeds

    pairs = seeds(customer_id=customer_id, email_sha256=sha256_email(email),
                  phone_sha256=sha256_phone(phone), order_ids=order_ids)
    if not pairs:
        raise click.UsageError("name the customer: --customer, --email, --phone or --order")
    runtime = command_runtime()
    click.echo(json.dumps(Privacy(runtime.engine).export(store_id, pairs), indent=2, sort_keys=True))
