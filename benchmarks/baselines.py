"""The baselines that ingest is measured against, served by gunicorn with the same
settings as `kwai-bridge serve` (its worker class too):

- `durable_app()`: a minimal durable receiver: read the body, check the HMAC, insert the
  raw body, answer 200. Into SQLite (`BENCH_SQLITE_PATH`: WAL, synchronous=FULL, one
  connection per worker) or into PostgreSQL (`BENCH_POSTGRES_URL`: autocommit, a pool of
  connections per worker, as the bridge's engine keeps; `POSTGRES_TABLE` made beforehand).
- `bare_app()`: a Flask route that only reads the body.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import queue
import sqlite3
from contextlib import contextmanager

from flask import Flask, request

POSTGRES_TABLE = "create table inbox (id text primary key, body bytea)"
INSERT = "insert into inbox (id, body) values ({0}, {0}) on conflict do nothing"


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
    postgres = os.environ.get("BENCH_POSTGRES_URL")
    insert = _postgres(postgres) if postgres else _sqlite(os.environ["BENCH_SQLITE_PATH"])

    @app.post("/webhooks/<platform>/<store>")
    def receive(platform: str, store: str):
        body = request.get_data()
        expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, request.headers.get("X-Shopify-Hmac-Sha256", "")):
            return {"status": "bad signature"}, 401
        insert(request.headers.get("X-Shopify-Webhook-Id"), body)
        return {"status": "queued"}

    return app


def _sqlite(path: str):
    synchronous = os.environ.get("KWAI_BRIDGE_SQLITE_SYNCHRONOUS", "FULL")
    opened: dict[int, sqlite3.Connection] = {}

    def insert(delivery_id: str, body: bytes) -> None:
        # One connection per worker process, opened on its first request.
        conn = opened.get(os.getpid())
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)
            conn.execute("pragma journal_mode=wal")
            conn.execute(f"pragma synchronous={synchronous}")
            conn.execute("create table if not exists inbox (id text primary key, body blob)")
            opened[os.getpid()] = conn
        conn.execute(INSERT.format("?"), (delivery_id, body))

    return insert


def _postgres(url: str):
    import psycopg  # imported in the worker, after gevent's patch, as the bridge does

    idle: queue.LifoQueue = queue.LifoQueue()

    @contextmanager
    def connection():
        try:
            conn = idle.get_nowait()
        except queue.Empty:
            conn = psycopg.connect(url, autocommit=True)
        try:
            yield conn
        finally:
            idle.put(conn)

    def insert(delivery_id: str, body: bytes) -> None:
        with connection() as conn:
            conn.execute(INSERT.format("%s"), (delivery_id, body))

    return insert
