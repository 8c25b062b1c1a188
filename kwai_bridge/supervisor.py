"""Keep a child process running: start it, and whenever it dies log at ERROR how it
ended (exit status or signal; at WARNING for a clean exit, status 0) and start it again
after a back-off that doubles with each death in a row, up to a cap. `kwai-bridge serve --with-worker` runs the
dispatcher this way.

The back-off is a pure function of the deaths in a row (`restart_delay`, a table in
the tests); the supervisor takes its clock and its sleep as parameters, so tests
neither wait for the back-off nor depend on the machine's speed.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from typing import Callable, Sequence

log = logging.getLogger(__name__)

#: The wait before the first restart; it doubles with each death in a row...
FIRST_DELAY = 1.0
#: ... up to this many seconds.
MAX_DELAY = 60.0
#: A child that ran this long before it died was healthy: its death counts as the first.
STABLE_SECONDS = 60.0
#: How often the watcher looks whether the child still runs.
POLL_SECONDS = 0.2


def restart_delay(deaths: int) -> float:
    """Seconds to wait before starting the child again after `deaths` deaths in a row
    (1 = the first): 1, 2, 4, ... up to MAX_DELAY."""
    if deaths < 1:
        raise ValueError(f"deaths counts from 1, not {deaths}")
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(deaths - 1, 64))


def describe_exit(returncode: int | None) -> str:
    """How a child ended, for the log: `exit status 3`, `killed by SIGKILL`."""
    if returncode is None:
        return "ended (its exit status was collected elsewhere)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


class Supervisor:
    """Runs `command` as a child process and starts it again when it dies, until `stop`.

    `sleep(seconds)` waits out a back-off and returns True when the supervisor is
    stopping (by default it waits on the stop flag); `clock()` measures how long each
    child ran.
    """

    def __init__(self, command: Sequence[str], *, name: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.command = list(command)
        self.name = name
        self.clock = clock
        self._stopping = threading.Event()
        self.sleep = sleep or self._stopping.wait
        self._lock = threading.Lock()  # over the current child and its reaping
        self._proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._lost_status = False
        self._winding_down = False  # see `winding_down`
        self.deaths = 0  # in a row
        self._watcher = threading.Thread(target=self._watch, name=f"supervise-{name}", daemon=True)

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        with self._lock:
            proc = self._proc
            return proc.pid if proc is not None and proc.returncode is None else None

    def start(self) -> "Supervisor":
        with self._lock:
            self._spawn()
        self._watcher.start()
        return self

    def send_signal(self, sig: int) -> None:
        """Pass `sig` on to the child, if one runs."""
        with self._lock:
            proc = self._proc
            if proc is not None and not self._reaped(proc):
                proc.send_signal(sig)

    def reap(self) -> None:
        """Collect the child's exit status if it has ended. A process that reaps every
        child (gunicorn's arbiter) calls this first, so that the status is not lost."""
        with self._lock:
            if self._proc is not None:
                self._reaped(self._proc)

    def winding_down(self) -> None:
        """Note that the whole process is stopping, from a signal handler (it only sets a
        flag): a signal sent to the process group (Ctrl-C, systemd's stop) reaches the
        child too, and its end is then neither an error nor a reason to restart it."""
        self._winding_down = True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop restarting, ask the child to stop (SIGTERM), and wait for it; after
        `timeout` seconds kill it."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if self._watcher.is_alive():
            self._watcher.join()
        if proc is None or self._reaped_locked(proc):
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("%s (pid %d) did not stop within %g s: killing it", self.name, proc.pid, timeout)
            proc.kill()
            proc.wait()

    # -- inside ---------------------------------------------------------------------
    def _spawn(self) -> None:
        """Start a child (under `_lock`)."""
        self._started_at = self.clock()
        self._lost_status = False
        self._proc = subprocess.Popen(self.command)
        log.info("%s started (pid %d)", self.name, self._proc.pid)

    def _reaped_locked(self, proc: subprocess.Popen) -> bool:
        with self._lock:
            return self._reaped(proc)

    def _reaped(self, proc: subprocess.Popen) -> bool:
        """Whether `proc` has ended, collecting its status once (under `_lock`)."""
        if proc.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:  # another waiter collected it: it ended, how is lost
            self._lost_status = True
            proc.returncode = 0  # Popen must not think it still runs
            return True
        if pid == 0:
            return False
        proc.returncode = os.waitstatus_to_exitcode(status)
        return True

    def _watch(self) -> None:
        while True:
            with self._lock:
                proc = self._proc
            if proc is None:
                how = "could not be started"
            else:
                while not self._reaped_locked(proc):
                    if self._stopping.wait(POLL_SECONDS):
                        return
                how = describe_exit(None if self._lost_status else proc.returncode)
            if self._stopping.is_set() or self._winding_down:
                return
            ran = self.clock() - self._started_at
            self.deaths = 1 if ran >= STABLE_SECONDS else self.deaths + 1
            delay = restart_delay(self.deaths)
            # Exit status 0 is a child that was asked to stop (SIGTERM, SIGINT), most often
            # by a signal to the whole process group that is stopping serve too.
            clean = proc is not None and proc.returncode == 0 and not self._lost_status
            log.log(logging.WARNING if clean else logging.ERROR,
                    "%s (pid %s) %s after %.0f s; starting it again in %g s (%d death(s) in a row)",
                    self.name, proc.pid if proc else "-", how, ran, delay, self.deaths)
            if self.sleep(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError:
                    log.exception("%s: starting %s failed", self.name, self.command[0])
                    self._proc = None

__all__ = ["FIRST_DELAY", "MAX_DELAY", "STABLE_SECONDS", "Supervisor", "describe_exit", "restart_delay"]
