"""A loopback receiver for alerts: records every JSON body POSTed to it, answering
`status` (200 unless a test says otherwise)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AlertReceiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        self.tries = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.tries += 1
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self) -> list[tuple[str, str, str]]:
        """(kind, store, state) of each alert received since the last take."""
        taken = [(b["alert"]["kind"], b["alert"]["store"], b["alert"]["state"]) for b in self.bodies]
        self.bodies.clear()
        return taken

    def __enter__(self) -> "AlertReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
