"""No secret in clear in the database: the raw SQLite file (and its write-ahead log) and a
`pg_dump` of the PostgreSQL schema, after stores were imported, changed, used to receive
and send, tested and sealed again with a new key. And none in any process's output."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

from kwai_bridge.db import make_engine
from kwai_bridge.outbox import Outbox
from kwai_bridge.sealing import new_key
from tests.conftest import IN_CI, leaked_secrets
from tests.fake_kwai import FakeKwai
from tests.serving import (
    SHOPS, Served, bridge_env, keep_output, run_cli, start_worker, store_entry, stop_workers, take_outputs,
    write_stores,
)
from tests.traffic import post_order

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-at-rest-3f9a1c7e"
NEXT_WEBHOOK_SECRET = "whsec-at-rest-next-8b2d"
ACCESS_TOKEN = "kwai-token-at-rest-5e71"
FIXED_TOKEN = "kwai-token-at-rest-fixed-91c2"
ENV_TOKEN = "kwai-token-from-env-c4d0"
CLICK_TOKEN = "click-token-at-rest-0e4f5a6b7c8d9e0f1a2b3c4d"
NEW_KEY = new_key()


def stores_file(path: Path, *webhook_secrets: str, token: str = ACCESS_TOKEN) -> Path:
    return write_stores(path, [
        # The secrets of "acme" match what tests/traffic.py signs with, so it receives orders.
        store_entry("shopify", "acme", access_token=token, click_tokens=[CLICK_TOKEN]),
        store_entry("woocommerce", "woo", webhook_secrets=list(webhook_secrets), access_token="${WOO_TOKEN}"),
        store_entry("shopline", "line", shop=SHOPS["shopline"], access_token=ACCESS_TOKEN + "-line"),
    ])


def test_leaked_secrets_names_where_and_only_the_last_four():
    found = leaked_secrets([("serve", f"token={ACCESS_TOKEN}"), ("worker", "nothing")], [ACCESS_TOKEN, "other"])
    assert found == ["serve printed the secret ending '5e71'"]


def test_no_secret_in_clear_in_the_database_or_the_output(tmp_path, database_url):
    secrets = [WEBHOOK_SECRET, NEXT_WEBHOOK_SECRET, ACCESS_TOKEN, FIXED_TOKEN, ENV_TOKEN, CLICK_TOKEN, NEW_KEY]
    stores = stores_file(tmp_path / "stores.toml", WEBHOOK_SECRET)
    with FakeKwai() as kwai:
        env = bridge_env(database_url=database_url, stores=stores, kwai_url=kwai.base_url, WOO_TOKEN=ENV_TOKEN,
                         STORES_REFRESH_SECONDS="0.1")  # the worker sees the fixed token at once
        env["WOO_TOKEN"] = env.pop("KWAI_BRIDGE_WOO_TOKEN")
        secrets.append(env["KWAI_BRIDGE_SECRET_KEYS"])
        assert run_cli(env, "migrate").returncode == 0
        start_worker(env)
        with Served(env, workers=1) as served:
            kwai.fail_next(1, result_code=10006)  # held, with Kwai's answer recorded
            assert post_order(served.url, "acme").status == 200
            wait_until_held(Outbox(make_engine(database_url)))
            changed = stores_file(tmp_path / "changed.toml", NEXT_WEBHOOK_SECRET, WEBHOOK_SECRET, token=FIXED_TOKEN)
            assert run_cli(env, "stores", "import", str(changed)).returncode == 0
            assert run_cli(env, "events", "replay", "--store", "acme", "--result", "10006").returncode == 0
            assert [post_order(served.url, "acme").status for _ in range(2)] == [200, 200]
            assert kwai.wait_for(3, timeout=60)
            assert run_cli(env, "send-test-event", "--store", "woo", "--clickid", "T").returncode == 0
            rotated = {**env, "KWAI_BRIDGE_SECRET_KEYS": f"{NEW_KEY},{env['KWAI_BRIDGE_SECRET_KEYS']}"}
            assert run_cli(rotated, "secrets", "rotate").returncode == 0
            assert run_cli(rotated, "stores", "export", "--with-secrets", secrets_on_stdout=True).returncode == 0
            while_running = raw_database(database_url, tmp_path)
        stop_workers()
    assert {r.fields["access_token"] for r in kwai.received} == {ACCESS_TOKEN, FIXED_TOKEN, ENV_TOKEN}, \
        "the secrets were used"
    raws = [*while_running, *raw_database(database_url, tmp_path)]
    assert all(SHOPS["shopify"].encode() in raw for where, raw in raws if not where.endswith("-wal")), \
        "the search reads the stored text (the shop, not a secret, is there in clear)"
    for where, raw in raws:
        found = [secret[-4:] for secret in secrets if secret.encode() in raw]
        assert not found, f"{where} holds secrets in clear (ending {found})"
    outputs = take_outputs()
    assert not leaked_secrets(outputs, secrets)
    for where, text in outputs:  # for the suite-wide check as well
        keep_output(where, text)


def wait_until_held(outbox: Outbox, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not outbox.counts(store_id="acme")["held"]:
        assert time.monotonic() < deadline, "the event Kwai refused with 10006 was not held"
        time.sleep(0.1)


def raw_database(database_url: str, tmp_path: Path) -> list[tuple[str, bytes]]:
    """(what, bytes) of the database as stored: SQLite's files, or a dump of the schema."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return [(str(f), f.read_bytes()) for f in files if f.exists()]
    return [("pg_dump", pg_dump(database_url))]


def pg_dump(database_url: str) -> bytes:
    """The PostgreSQL schema of `database_url` (named by its search_path), dumped whole."""
    program = shutil.which("pg_dump")
    if program is None:
        reason = "pg_dump is not installed: the PostgreSQL dump cannot be searched"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    parts = urlsplit(database_url)
    schema = parse_qs(parts.query)["options"][0].removeprefix("-csearch_path=")
    done = subprocess.run([program, "--schema", schema, urlunsplit(parts._replace(query=""))],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout
