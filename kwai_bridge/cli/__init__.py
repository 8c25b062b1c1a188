"""The `kwai-bridge` command line: serve, worker, migrate, stores, events, deliveries,
send-test-event, attribution, privacy, users, tokens and audit. `main` is the entry
point; each module below registers its commands on it."""
from kwai_bridge.cli.base import main
from kwai_bridge.cli import accounts, attribution, privacy, reconcile, records, service, stores  # noqa: F401  (they register their commands)

__all__ = ["main"]
