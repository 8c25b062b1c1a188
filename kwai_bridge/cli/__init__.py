"""The `kwai-bridge` command line: serve, worker, migrate, stores, events, deliveries,
send-test-event, attribution and privacy. `main` is the entry point; each module below
registers its commands on it."""
from kwai_bridge.cli.base import main
from kwai_bridge.cli import attribution, privacy, records, service, stores  # noqa: F401  (they register their commands)

__all__ = ["main"]
