"""Configuration: the stores file (one table per shop) and the stores it holds.

The stores file is TOML read with `tomllib` (`stores_file`); the stores are values
(`stores`); the database keeps them (`kwai_bridge.catalog`). Process settings
(`KWAI_BRIDGE_*` variables) are `kwai_bridge.settings`. Every problem raises ConfigError
with a sentence naming the store and field (or the variable), never a value that could
be a secret.
"""
from __future__ import annotations

from kwai_bridge.config.event_choices import expected_topics
from kwai_bridge.config.stores import ConfigError, ConfigErrors, StoreConfig, Stores
from kwai_bridge.config.stores_file import (
    EXAMPLE_FILE, PLATFORMS, SECRET_FIELDS, check_store, load_stores, parse_entries, parse_stores, read_stores_file,
    references,
)


__all__ = [
    "EXAMPLE_FILE", "PLATFORMS", "SECRET_FIELDS", "ConfigError", "ConfigErrors", "StoreConfig", "Stores", "check_store",
    "expected_topics", "load_stores", "parse_entries", "parse_stores", "read_stores_file", "references",
]
