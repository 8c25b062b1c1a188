"""The stores, kept in the database (SQLite or PostgreSQL, beside the outbox).

- `documents`: a store as a JSON document with its secrets sealed;
- `repository`: `Catalog`, the table's reads and changes, each with its audit entry;
- `registry`: `StoreRegistry`, the snapshot each process serves from, following changes;
- `importing`: the stores file, imported all or nothing.
"""
from kwai_bridge.catalog.documents import store_fields
from kwai_bridge.catalog.importing import import_at_start, import_file
from kwai_bridge.catalog.registry import StoreRegistry
from kwai_bridge.catalog.repository import (
    Catalog, CatalogError, ImportReport, NoSuchStore, Snapshot, StoreBusy, StoreExists, StoreRecord, changed_fields,
)

__all__ = [
    "Catalog", "CatalogError", "ImportReport", "NoSuchStore", "Snapshot", "StoreBusy", "StoreExists", "StoreRecord",
    "StoreRegistry", "changed_fields", "import_at_start", "import_file", "store_fields",
]
