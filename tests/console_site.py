"""The console served over loopback for the browser tests: the admin API's world
(tests/api_world.py: stores acme and globex with dead and held events, an admin, a
merchant of each store) with passwords, a store without problems, and the fake Kwai."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from kwai_bridge.accounts import Accounts
from kwai_bridge.config import check_store
from kwai_bridge.kwai.client import KwaiClient
from kwai_bridge.worker import Dispatcher
from tests.api_world import NOW, World, build_world
from tests.serving import store_entry

PASSWORD = "correct horse battery staple"
ADMIN, MERCHANT = "ops@agency.example", "ann@acme.example"


@dataclass
class Site:
    world: World
    url: str
    kwai_url: str
    _server: Any
    _thread: threading.Thread

    @property
    def runtime(self):
        return self.world.runtime

    def dispatch(self) -> dict[str, int]:
        """One dispatcher pass over what is due, at the world's clock."""
        client = KwaiClient(self.kwai_url)
        try:
            return Dispatcher(outbox=self.runtime.outbox, registry=self.runtime.registry, client=client,
                              concurrency=2, clock=self.world.clock).run(once=True)
        finally:
            client.close()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=30)
        self._server.server_close()


def open_site(tmp_path: Path, database_url: str, *, kwai_url: str) -> Site:
    world = build_world(tmp_path, database_url, kwai_url=kwai_url)
    runtime = world.runtime
    accounts = Accounts(runtime.engine)
    for email in (ADMIN, MERCHANT):
        accounts.set_password(email, PASSWORD, actor="test", now=NOW)
    # a store with nothing wrong but no webhook yet: listed after the held ones
    runtime.catalog.create(check_store(
        store_entry("shopline", "aaa-calm", shop="calm.myshopline.com")), actor="test", now=NOW)
    runtime.registry.refresh()
    server = make_server("127.0.0.1", 0, world.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-site", daemon=True)
    thread.start()
    return Site(world, f"http://127.0.0.1:{server.server_port}", kwai_url, server, thread)
