"""The real bridge served over loopback for browser tests: a storefront's snippet posts
to it cross-origin, and `deliver()` runs the dispatcher once towards the fake Kwai."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from random import Random
from typing import Any, Iterable, Mapping

from werkzeug.serving import make_server

from kwai_bridge.db import make_engine, migrate
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.worker import Dispatcher
from server import create_app
from tests.serving import write_stores


class BridgeSite:
    """`create_app` over a SQLite file, served by a threaded werkzeug server on 127.0.0.1."""

    def __init__(self, tmp_path: Path, stores: Iterable[Mapping[str, Any]]) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{tmp_path / 'bridge.db'}"
        migrate(make_engine(url))
        path = write_stores(tmp_path / "stores.toml", stores)
        self.app = create_app({"DATABASE_URL": url, "STORES": str(path)})
        self.runtime = self.app.extensions["kwai_bridge.runtime"]
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_port

    def settings(self, store_id: str) -> dict[str, Any]:
        """The endpoints the snippet of `store_id` posts to."""
        return {"endpoint": f"{self.url}/clicks/{store_id}", "eventsEndpoint": f"{self.url}/events/{store_id}"}

    def events(self, store_id: str) -> list[Any]:
        return sorted((r for r in self.runtime.outbox.list_events(limit=1000) if r.store_id == store_id),
                      key=lambda r: r.id)

    def deliver(self, kwai_url: str) -> dict[str, int]:
        client = KwaiClient(kwai_url, read_timeout=2)
        try:
            return Dispatcher(outbox=self.runtime.outbox, registry=self.runtime.registry, client=client,
                              concurrency=2, lease_seconds=60, clock=lambda: datetime.now(timezone.utc),
                              rng=Random(1)).run(once=True)
        finally:
            client.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
