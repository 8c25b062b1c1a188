"""How gunicorn serves the app: one set of options for `kwai-bridge serve` and for
deploy/gunicorn.conf.py alike."""
from __future__ import annotations

import os
from typing import Any

#: The app gunicorn loads: the factory in server.py.
APP = "server:create_app()"


def gunicorn_options(*, host: str = "0.0.0.0", port: int = 8000,
                     workers: int | None = None) -> dict[str, Any]:
    """gunicorn's settings by name: the app on `host`:`port` with `workers` processes
    (by default two per core)."""
    return {
        "wsgi_app": APP,
        "bind": f"{host}:{port}",
        # Sync workers: the request path only verifies, parses and commits, so it never
        # waits on the network; on 2 cores sync workers answered faster than threads or
        # gevent.
        "worker_class": "sync",
        "workers": workers if workers is not None else 2 * (os.cpu_count() or 1),
        # Shopify and Shopline give 5 s to answer: anything near this limit is a fault.
        "timeout": 30,
        "graceful_timeout": 20,
        # Keep access logs off: query strings and shop names are not needed in logs.
        "accesslog": None,
        "errorlog": "-",
    }


__all__ = ["APP", "gunicorn_options"]
