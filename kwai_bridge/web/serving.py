"""How gunicorn serves the app: one set of options for `kwai-bridge serve` and for
deploy/gunicorn.conf.py alike, the worker class they name, and the master process that
`kwai-bridge serve` runs (`python -m kwai_bridge.web`)."""
from __future__ import annotations

import gc
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from kwai_bridge.supervisor import Supervisor

#: The app gunicorn loads: the factory in server.py.
APP = "server:create_app()"
#: Seconds a client gets, from connecting, to send its request line and headers.
HEAD_TIMEOUT = 5
#: Connections one worker holds at once (idle, slow or being answered).
WORKER_CONNECTIONS = 1000
#: Descriptors a worker needs besides its connections: database files, logs, gunicorn's.
OWN_DESCRIPTORS = 256
#: Where prometheus-client's multiprocess mode keeps each process's values (its own
#: variable; named here rather than imported, as importing prometheus_client before the
#: variable is set would leave the forked workers outside multiprocess mode).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class GeventWorker(_GunicornGeventWorker):
    """gunicorn's gevent worker, answering one request per connection.

    Every connection is a greenlet, so a client that connects and sends nothing, or its
    headers a byte at a time, holds a few kilobytes and no worker. gunicorn patches the
    standard library in the worker after the fork, before it loads the app; the app
    creates its locks, thread-locals and database pools there, after the patch.
    """

    def init_process(self):
        # Room for every connection besides the worker's own files: services often start
        # with a soft limit of 1,024, and a worker that runs out stops accepting.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = self.worker_connections + OWN_DESCRIPTORS
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
        super().init_process()

    def handle_request(self, listener_name, req, sock, addr):
        # Close after every answer, as the sync workers did. gunicorn's `keepalive` then
        # only bounds how long a client may take over its request head (HEAD_TIMEOUT),
        # and no load balancer can reuse a connection just as we close it: a webhook
        # lost that way is a 502, which WooCommerce never retries.
        req.must_close = True
        # A client that goes silent once its head is in (stalling in the body, or gone
        # without a word) is dropped after the worker timeout, as a sync worker waiting
        # on it would have been killed then.
        sock.settimeout(self.cfg.timeout)
        return super().handle_request(listener_name, req, sock, addr)


def gunicorn_options(*, host: str = "0.0.0.0", port: int = 8000,
                     workers: int | None = None) -> dict[str, Any]:
    """gunicorn's settings by name: the app on `host`:`port` with `workers` processes
    (by default two per core)."""
    return {
        "wsgi_app": APP,
        "bind": f"{host}:{port}",
        # gevent, not sync workers: a sync worker is held by one unfinished request
        # until the timeout, so a few idle or slow connections stopped every webhook.
        # The request path still never waits on the network; on SQLite the writer lock
        # and the WAL sync block the whole worker for their (short) time, as before.
        "worker_class": f"{__name__}.GeventWorker",
        "workers": workers if workers is not None else 2 * (os.cpu_count() or 1),
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": HEAD_TIMEOUT,
        # Shopify and Shopline give 5 s to answer: anything near this limit is a fault.
        "timeout": 30,
        "graceful_timeout": 20,
        # Keep access logs off: query strings and shop names are not needed in logs.
        "accesslog": None,
        "errorlog": "-",
        "child_exit": _child_exit,
        "post_worker_init": _post_worker_init,
    }


def metrics_directory() -> bool:
    """Set PROMETHEUS_MULTIPROC_DIR for this process and its children (gunicorn's workers,
    the dispatcher), emptied of an earlier run's values; True when it was made here (a
    new temporary directory, to remove at exit), False when the environment named it."""
    directory = os.environ.get(METRICS_DIR_ENV, "").strip()
    made = not directory
    if made:
        directory = tempfile.mkdtemp(prefix="kwai-bridge-metrics-")
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)
    os.environ[METRICS_DIR_ENV] = directory
    return made


def _post_worker_init(worker) -> None:
    """gunicorn's hook when a worker has loaded the app: what it holds for good (modules,
    the app, the engine, the stores) is moved out of the garbage collector's reach.

    A full collection walks every tracked object, about 100,000 once the app is loaded,
    and stops the whole worker meanwhile (67 ms measured in process): every webhook in
    flight waited for it. Frozen, those objects are no longer walked; what requests make
    is collected as before."""
    gc.collect()
    gc.freeze()


def _child_exit(server, worker) -> None:
    """gunicorn's hook when a worker has ended: its live gauges go (its counts stay)."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def run(*, host: str, port: int, workers: int | None = None, with_worker: bool = False) -> None:
    """Run gunicorn's master in this process until it stops; with `with_worker`, also the
    dispatcher (`kwai-bridge worker`) as its child, restarted whenever it dies."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    made_metrics_directory = metrics_directory()  # before any worker or dispatcher starts
    master = os.getpid()
    supervisor = None
    if with_worker:
        # -P: the working directory does not go first on the child's sys.path, where a
        # folder named like one of ours (kwai_bridge, adapters) would shadow the project.
        supervisor = Supervisor([sys.executable, "-P", "-m", "kwai_bridge.cli", "worker"],
                                name="dispatcher").start()

    class App(BaseApplication):
        def load_config(self):
            for name, value in gunicorn_options(host=host, port=port, workers=workers).items():
                self.cfg.set(name, value)
            self.cfg.set("on_reload", lambda arbiter: _on_sighup(supervisor))

        def load(self):
            return import_app(self.cfg.wsgi_app)

        def run(self):
            if supervisor is None:
                return super().run()
            try:
                _supervising_arbiter(self, supervisor).run()
            except RuntimeError as exc:  # as BaseApplication.run reports a failed start
                print(f"\nError: {exc}\n", file=sys.stderr)
                sys.exit(1)

    try:
        App().run()
    finally:
        if supervisor is not None:
            supervisor.stop(timeout=30)
        # A worker leaving with sys.exit unwinds this frame too, forked from the master's.
        if made_metrics_directory and os.getpid() == master:
            shutil.rmtree(os.environ[METRICS_DIR_ENV], ignore_errors=True)


def _on_sighup(supervisor: Supervisor | None) -> None:
    """SIGHUP to `kwai-bridge serve`: import KWAI_BRIDGE_STORES again, once, in a child
    process (every process then sees the change in the database), and tell the dispatcher.

    A child, not this process: the master forks the gevent workers, and must not import
    the database driver or requests before they patch the standard library.
    """
    if os.environ.get("KWAI_BRIDGE_STORES", "").strip():
        try:
            done = subprocess.run([sys.executable, "-P", "-m", "kwai_bridge.cli", "stores", "reimport"],
                                  timeout=120, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if done.stdout.strip():
                print(done.stdout.strip(), file=sys.stderr)
        except (OSError, subprocess.TimeoutExpired) as exc:  # the master outlives a stuck import
            print(f"stores file not imported on SIGHUP: {exc}", file=sys.stderr)
    if supervisor is not None:
        supervisor.send_signal(signal.SIGHUP)


def _supervising_arbiter(app, supervisor: Supervisor):
    """gunicorn's arbiter, made to leave the dispatcher to `supervisor`.

    The arbiter reaps every child with waitpid(-1), the dispatcher too, and drops the
    status of a child it does not know: the supervisor collects its child's status
    first, as gunicorn does for its own dirty arbiter. And a signal that stops the
    arbiter tells the supervisor at once, before the dispatcher (which may have had the
    same signal, sent to the whole process group) ends.
    """
    from gunicorn.arbiter import Arbiter

    class SupervisingArbiter(Arbiter):
        def reap_workers(self):
            supervisor.reap()
            super().reap_workers()

        def signal(self, sig, frame):
            if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                supervisor.winding_down()
            super().signal(sig, frame)

    return SupervisingArbiter(app)


__all__ = ["APP", "HEAD_TIMEOUT", "METRICS_DIR_ENV", "WORKER_CONNECTIONS", "GeventWorker", "gunicorn_options",
           "metrics_directory", "run"]
