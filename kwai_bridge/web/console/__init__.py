"""The console at /console/: server-rendered pages over the same code as the admin API
(`kwai_bridge.admin`), for people rather than scripts.

- `auth`: sign-in, sessions, the form token (CSRF) every POST must carry;
- `stores`: the overview, a store's page, adding and editing stores;
- `events`: a store's event log and one event;
- `forms`, `setup`, `charts`: form fields to store fields, set-up steps, SVG charts.
"""
from kwai_bridge.web.console.auth import blueprint
from kwai_bridge.web.console import events, stores  # noqa: F401  (they add their routes)

__all__ = ["blueprint"]
