"""The two baselines that ingest is measured against, served by gunicorn with the same
settings as `kwai-bridge serve`:

- `durable_app()`: a minimal durable receiver: read the body, check the HMAC, insert the
  raw body into SQLite with the same durability (WAL, synchronous=FULL), answer 200.
- `bare_app()`: a Flask route that only reads the body.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3

from flask import Flask, request


def bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/<platform>/<store>")
    def receive(platform: str, store: str):
        request.get_data()
        return {"status": "ok"}

    return app


def durable_app() -> Flask:
    app = Flask(__name__)
    secret = os.environ["BENCH_SECRET"].encode()
    path = os.environ["BENCH_SQLITE_PATH"]
    synchronous = os.environ.get("KWAI_BRIDGE_SQLITE_SYNCHRONOUS", "FULL")

    opened: dict[int, sqlite3.Connection] = {}

    def db() -> sqlite3.Connection:
        # One connection per worker process, opened on its first request.
        conn = opened.get(os.getpid())
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
            conn.execute("pragma journal_mode=wal")
            conn.execute(f"pragma synchronous={synchronous}")
            conn.execute("create table if not exists inbox (id text primary key, body blob)")
            opened[os.getpid()] = conn
        return conn

    @app.post("/webhooks/<platform>/<store>")
    def receive(platform: str, store: str):
        body = request.get_data()
        expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, request.headers.get("X-Shopify-Hmac-Sha256", "")):
            return {"status": "bad signature"}, 401
        db().execute("insert into inbox (id, body) values (?, ?) on conflict do nothing",
                     (request.headers.get("X-Shopify-Webhook-Id"), body))
        return {"status": "queued"}

    return app
