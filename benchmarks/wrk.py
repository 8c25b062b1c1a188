"""wrk, the load generator of the throughput benchmarks: found (or installed from Debian's
packages, as .ci/run installs what tests need), fed a file of pre-built requests
(benchmarks/requests.lua) as fast as the server answers, or paced at a mean rate with
Poisson arrivals (benchmarks/paced.lua), and its one JSON line read back."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
#: Connections of a paced run: more than the rate keeps in flight, so that arrivals keep
#: to their schedule.
PACED_CONNECTIONS = 16


def ensure_command(command: str) -> str:
    """`command`'s path, installing Debian's package of that name first if it is missing
    (as .ci/run installs what tests need)."""
    if not shutil.which(command):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", command], check=True, env=env, stdout=subprocess.DEVNULL)
    return shutil.which(command) or sys.exit(f"{command} is needed: apt-get install {command}")


def ensure_wrk() -> str:
    """wrk's path, installing it first if it is missing."""
    return ensure_command("wrk")


def write_requests(path: Path, make: Callable[[int], bytes], count: int) -> None:
    """`count` whole requests, `make(0)` to `make(count - 1)`, one after the other in `path`."""
    with path.open("wb") as out:
        for n in range(count):
            out.write(make(n))


def wrk_command(wrk: str, port: int, requests_file: Path, seconds: float, concurrency: int,
                rate: float | None = None) -> list[str]:
    """wrk with one thread and `concurrency` connections for `seconds`, cycling through the
    requests of `requests_file`; at `rate` requests a second on average when given."""
    script, extra = ("requests.lua", []) if rate is None else ("paced.lua", [f"{rate:.3f}"])
    return [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(HERE / script),
            f"http://127.0.0.1:{port}", "--", str(requests_file), *extra]


def run_wrk(wrk: str, port: int, requests_file: Path, *, seconds: float, concurrency: int,
            rate: float | None = None) -> dict:
    """One wrk run: answers a second that were not errors, errors of any kind, requests
    sent, and latency p50, p99 and max in milliseconds (from the request's first byte
    written to its answer's last byte read)."""
    done = subprocess.run(wrk_command(wrk, port, requests_file, seconds, concurrency, rate), check=True,
                          capture_output=True, text=True)
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    errors = sum(counts[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {"rate": (counts["requests"] - counts["status"]) / (counts["duration_us"] / 1e6), "errors": errors,
            "requests": counts["requests"], "p50": counts["p50_us"] / 1000, "p99": counts["p99_us"] / 1000,
            "max": counts["max_us"] / 1000, "tail": [us / 1000 for us in counts["tail_us"]]}


def run_paced(wrk: str, port: int, requests_file: Path, make: Callable[[int], bytes], *, rate: float,
              seconds: float) -> dict:
    """One paced run (`rate` requests a second, Poisson arrivals, PACED_CONNECTIONS) of
    distinct requests `make(0)`, `make(1)`... written to `requests_file` first, half as
    many again as the run sends on average, so that none repeats: run_wrk's results."""
    write_requests(requests_file, make, int(rate * seconds * 1.5))
    return run_wrk(wrk, port, requests_file, seconds=seconds, concurrency=PACED_CONNECTIONS, rate=rate)


def pooled_percentile(runs: list[dict], p: float) -> float:
    """The `p`th percentile (90 to 100) of the latencies of `runs` (run_wrk's results)
    taken together, in milliseconds.

    Each run's slowest tenth is known at every 0.1 percentile: at its 90th percentile, 90 %
    of its requests are done, and at each point after it a thousandth more. Below its
    90th percentile a run counts as having none done, so that a run whose 90th is above
    the answer can only make it higher, never lower."""
    if not 90 <= p <= 100:
        raise ValueError("the runs keep percentiles 90 to 100 only")
    total = sum(run["requests"] for run in runs)
    steps = sorted((ms, run["requests"] * (0.9 if k == 0 else 0.001))
                   for run in runs for k, ms in enumerate(run["tail"]))
    done = 0.0
    for ms, share in steps:
        done += share
        if done >= total * p / 100 - 1e-6 * total:
            return ms
    return steps[-1][0]
