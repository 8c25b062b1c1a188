"""Instructions per webhook, counted by callgrind: kwai-bridge's WSGI app beside the
minimal durable receiver (benchmarks/baselines.py), on SQLite and on PostgreSQL.

Throughput on a shared 2-core machine moves by a fifth from one run to the next;
instruction counts do not. Each target's app is called in process, with no HTTP and no
gunicorn (what both pay alike), on the same signed 10.7 KB Shopify orders as
benchmarks/ingest.py, each under `valgrind --tool=callgrind` twice: with `--few` and with
`--many` webhooks after a warm-up. The difference over the extra webhooks is one
webhook's instructions, start-up and warm-up left out. On PostgreSQL this counts the
client's side only (the server is another process): read the server's share off
benchmarks/ingest.py's CPU figures instead.

    python benchmarks/instructions.py [--few 100] [--many 300] [--databases sqlite,postgresql]

It runs for several minutes: valgrind runs Python some fifty times slower.
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import (  # noqa: E402
    BRIDGE, DEFAULT_PG, DURABLE, SECRET, SHOP, database, prepared, request_factory,
)
from benchmarks.wrk import ensure_command  # noqa: E402

WARM_UP = 30


def environ_of(raw: bytes) -> dict:
    """The WSGI environ of one prebuilt HTTP request (benchmarks/loadgen.build_request)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": target, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value.strip()
        else:
            environ["HTTP_" + key] = value.strip()
    environ["_body"] = body
    return environ


def child(target: str, url: str, count: int) -> None:
    """Build `target`'s app on the database at `url` and send it WARM_UP + `count` webhooks."""
    make, _ = request_factory(80, 0)
    prebuilt = [environ_of(make(n)) for n in range(WARM_UP + count)]
    if target == BRIDGE:
        from server import create_app

        app = create_app({"STORES": os.environ["KWAI_BRIDGE_STORES"]})  # as `serve` imports it at start
    else:
        from benchmarks.baselines import durable_app

        app = durable_app()
    answers = []

    def start_response(status, headers, exc_info=None):
        answers.append(status)

    for environ in prebuilt:
        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO(environ.pop("_body"))
        b"".join(app(environ, start_response))
    assert all(status.startswith("200") for status in answers), set(answers)


def counted(target: str, url: str, count: int, env: dict[str, str]) -> int:
    """Instructions callgrind counts for a whole child run of `count` webhooks."""
    with tempfile.NamedTemporaryFile(suffix=".callgrind") as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}", sys.executable,
             __file__, "--child", target, url, str(count)],
            env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{target} under callgrind failed: {done.stderr[-2000:]}")
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output: {done.stderr[-500:]}")
    return int(found.group(1))


def per_webhook(kind: str, target: str, args, workdir: str, env: dict[str, str]) -> float:
    runs = {}
    for count in (args.few, args.many):
        with database(kind, target, count, workdir, args.postgres) as url:
            runs[count] = counted(target, url, count, prepared(target, url, env))
    return (runs[args.many] - runs[args.few]) / (args.many - args.few)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--few", type=int, default=100, help="webhooks in the shorter run")
    parser.add_argument("--many", type=int, default=300, help="webhooks in the longer run")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("KWAI_BRIDGE_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    ensure_command("valgrind")
    with tempfile.TemporaryDirectory() as workdir:
        stores = Path(workdir) / "stores.toml"
        stores.write_text(f'[[stores]]\nid = "bench"\nplatform = "shopify"\nshop = "{SHOP}"\n'
                          f'webhook_secrets = ["{SECRET}"]\npixel_id = "px"\naccess_token = "tok"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KWAI_BRIDGE_", "PROMETHEUS_"))}
        # The same hashes in every run: set and dict order, and so the work, repeat exactly.
        env.update({"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0", "KWAI_BRIDGE_STORES": str(stores),
                    "KWAI_BRIDGE_LOG_LEVEL": "WARNING", "BENCH_SECRET": SECRET,
                    "KWAI_BRIDGE_SECRET_KEYS": base64.urlsafe_b64encode(b"b" * 32).decode()})
        print(f"Instructions per webhook (callgrind), the WSGI app in process, signed 10,747-byte Shopify "
              f"orders; runs of {args.few} and {args.many} webhooks after {WARM_UP} to warm up")
        print(f"{'database':<11} {'kwai-bridge':>12} {'receiver':>12} {'ratio':>6}")
        for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
            bridge = per_webhook(kind, BRIDGE, args, workdir, env)
            receiver = per_webhook(kind, DURABLE, args, workdir, env)
            side = " (client side)" if kind == "postgresql" else ""
            print(f"{kind:<11} {bridge:>12,.0f} {receiver:>12,.0f} {bridge / receiver:>6.2f}{side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
