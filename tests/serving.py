"""Run the real thing in tests: a stores file, `kwai-bridge serve` and `kwai-bridge worker`
as child processes on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import requests

from kwai_bridge.catalog import Catalog, StoreRegistry, import_file
from kwai_bridge.cli.stores import toml_value
from kwai_bridge.sealing import make_sealer

ROOT = Path(__file__).resolve().parent.parent

SECRETS = {
    "shopify": "shpss_test_secret",
    "shopline": "shopline_app_secret",
    "woocommerce": "wc_webhook_secret",
}
#: Every secret the helpers below configure: none may appear in any process's output.
CONFIGURED_SECRETS = (*SECRETS.values(), *(f"token-{platform}" for platform in SECRETS))
SHOPS = {
    "shopify": "acme.myshopify.com",
    "shopline": "acme.myshopline.com",
    "woocommerce": "https://woo.example",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_entry(platform: str, store_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    entry = {
        "id": store_id or f"{platform}-store",
        "platform": platform,
        "shop": SHOPS[platform],
        "webhook_secrets": [SECRETS[platform]],
        "pixel_id": f"pixel-{platform}",
        "access_token": f"token-{platform}",
        "test_mode": False,
    }
    entry.update(overrides)
    return entry


def write_stores(path: Path, stores: Iterable[Mapping[str, Any]]) -> Path:
    lines = []
    for store in stores:
        lines.append("[[stores]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in store.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def registry_for(engine, stores_path: Path) -> StoreRegistry:
    """A registry over the database of `engine` after importing the stores file at
    `stores_path`, as `kwai-bridge worker` builds one; it looks for changes at every read."""
    catalog = Catalog(engine, sealer=make_sealer(os.environ["KWAI_BRIDGE_SECRET_KEYS"], database_url=""))
    import_file(catalog, stores_path, environ={}, actor="test", now=datetime.now(timezone.utc))
    return StoreRegistry(catalog, refresh_seconds=0)


def reimport(registry: StoreRegistry, stores_path: Path) -> bool:
    """Import the stores file again (what SIGHUP does) and refresh; True when it changed."""
    import_file(registry.catalog, stores_path, environ={}, actor="test", now=datetime.now(timezone.utc))
    return registry.refresh()


def bridge_env(*, database_url: str, stores: Path, kwai_url: str = "http://127.0.0.1:9/log/common",
               **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWAI_BRIDGE_")}
    env.update({
        "KWAI_BRIDGE_SECRET_KEYS": os.environ.get("KWAI_BRIDGE_SECRET_KEYS", ""),
        "KWAI_BRIDGE_DATABASE_URL": database_url,
        "KWAI_BRIDGE_STORES": str(stores),
        "KWAI_BRIDGE_KWAI_ENDPOINT": kwai_url,
        "KWAI_BRIDGE_POLL_INTERVAL": "0.05",
        "KWAI_BRIDGE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    })
    env.update({k if k.startswith("KWAI_BRIDGE_") else f"KWAI_BRIDGE_{k}": v for k, v in extra.items()})
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kwai_bridge.cli", *args]


#: What the processes started by the running test printed (see `take_outputs`).
_outputs: list[tuple[str, str]] = []


def keep_output(what: str, text: str | None) -> None:
    if text:
        _outputs.append((what, text))


def take_outputs() -> list[tuple[str, str]]:
    """(which process, what it printed) for every process the running test started and
    ended, forgotten once taken; tests/conftest.py looks for secrets in them."""
    taken = _outputs[:]
    _outputs.clear()
    return taken


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 120, cwd: Path = ROOT,
            secrets_on_stdout: bool = False) -> subprocess.CompletedProcess:
    """Run one command; its output is kept for the secrets check (only its log, on
    stderr, when it prints secrets on purpose, as `stores export --with-secrets` does)."""
    done = subprocess.run(cli_command(*args), env=dict(env), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    what = "kwai-bridge " + " ".join(args)
    keep_output(what, done.stderr)
    if not secrets_on_stdout:
        keep_output(what, done.stdout)
    return done


class Served:
    """`kwai-bridge serve` in its own process group, killed on exit."""

    def __init__(self, env: Mapping[str, str], *, workers: int = 2, port: int | None = None,
                 extra_args: Iterable[str] = (), cwd: Path = ROOT, program: Iterable[str] | None = None) -> None:
        self.env = dict(env)
        self.workers = workers
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.cwd = cwd
        self.program = list(program) if program is not None else cli_command()
        self.proc: subprocess.Popen | None = None
        self._output: str | None = None  # kept when serve stops, and its pipe closed
        # What serve prints is read as it comes: a pipe nobody reads holds 64 KB, and
        # then every process writing its log to it (serve, its workers, its dispatcher)
        # stops in the write (a database restart's errors once filled it in a second).
        self._chunks: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Served":
        self.proc = subprocess.Popen(
            [*self.program, "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), *self.extra_args],
            env=self.env, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True,
        )
        self._chunks, self._output = [], None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early: {self._stopped()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("serve did not answer /healthz in time")

    def web_workers(self) -> set[int]:
        """The process ids of gunicorn's workers under serve (not the dispatcher)."""
        found = set()
        for entry in Path("/proc").iterdir():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue  # not a process, or gone
            parent = int(stat.rpartition(")")[2].split()[1])
            if self.proc is not None and parent == self.proc.pid and b"kwai_bridge.web" in cmdline:
                found.add(int(entry.name))
        return found

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self._stopped()

    def children(self) -> list[tuple[int, list[str]]]:
        """(pid, command line) of serve's child processes: gunicorn's workers and, with
        --with-worker, the dispatcher (whose command line ends with `worker`)."""
        return child_processes(self.proc.pid) if self.proc else []

    def dispatcher_pid(self) -> int | None:
        """The pid of the dispatcher serve --with-worker runs, if one runs now."""
        return next((pid for pid, argv in self.children() if argv[-1:] == ["worker"]), None)

    def _read(self, stream) -> None:
        for line in stream:
            self._chunks.append(line)

    def _stopped(self) -> str:
        """Once serve has exited: keep what it printed and close the pipe."""
        if self.proc and self.proc.stdout and self._output is None:
            if self._reader is not None:
                self._reader.join()  # to the end of the pipe: every writer has exited
            self._output = "".join(self._chunks)
            self.proc.stdout.close()
            keep_output("kwai-bridge serve", self._output)
        return self._output or ""

    def output(self) -> str:
        """What serve printed (read to the end: call it once serve has stopped)."""
        return self._stopped()

    def __enter__(self) -> "Served":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._stopped()


def child_processes(parent: int) -> list[tuple[int, list[str]]]:
    """(pid, command line) of the live processes whose parent is `parent` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # The command name in parentheses may hold spaces: the fields follow the last ')'.
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(ppid) == parent and state != "Z":
            found.append((int(entry.name), argv))
    return sorted(found)


#: The workers started by the running test; `stop_workers` ends them after it.
_workers: list[subprocess.Popen] = []


def start_worker(env: Mapping[str, str], *args: str) -> subprocess.Popen:
    """`kwai-bridge worker` in its own process group, its output on a pipe."""
    proc = subprocess.Popen(cli_command("worker", *args), env=dict(env), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    _workers.append(proc)
    return proc


def stop_workers() -> None:
    """Kill the workers a test left running and close every worker's output pipe, which
    the garbage collector would otherwise close (with a warning) in some later test."""
    while _workers:
        proc = _workers.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdout and not proc.stdout.closed:  # a test that read it to the end closed it
            keep_output("kwai-bridge worker", proc.stdout.read())
            proc.stdout.close()


def app_with_stores(tmp_path: Path, database_url: str, stores: Iterable[Mapping[str, Any]], *, clock: Any,
                    **settings: Any):
    """The Flask app in process on a migrated `database_url`, serving `stores` (written
    to a stores file under `tmp_path`) with `settings` (names without KWAI_BRIDGE_)."""
    from kwai_bridge.db import make_engine, migrate
    from server import create_app

    config = {"DATABASE_URL": database_url, "STORES": str(write_stores(tmp_path / "stores.toml", stores)),
              **settings}
    migrate(make_engine(database_url))
    return create_app(config, clock=clock)
