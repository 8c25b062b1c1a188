"""The JSON admin API under /api/v1: stores, their health, events, deliveries, replays,
test events and the audit trail, for admins (every store) and merchants (their stores).

- `auth`: bearer tokens, the caller's `Principal`, errors as JSON;
- `schemas`: the marshmallow schemas of every body and query;
- `stores`, `events`, `status`: the routes; `openapi`: the document that describes them.
"""
from kwai_bridge.web.api.auth import blueprint
from kwai_bridge.web.api import events, openapi, status, stores  # noqa: F401  (they add their routes)

__all__ = ["blueprint"]
