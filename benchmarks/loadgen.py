"""A small asyncio HTTP load generator: one new connection per request, as a webhook
sender does. Closed loop for the saturation rate; open loop (Poisson arrivals, latency
measured from the scheduled send time) for latency at a given rate."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Callable

Request = tuple[bytes, bytes]  # (head without Content-Length, body)


@dataclass(frozen=True)
class Result:
    sent: int
    ok: int
    errors: int
    elapsed: float
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def build_request(path: str, headers: dict[str, str], body: bytes, host: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + body


async def _one(host: str, port: int, payload: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # until the server closes
        return int(status_line.split()[1])
    finally:
        writer.close()


async def _closed(host: str, port: int, make: Callable[[int], bytes], concurrency: int,
                  seconds: float) -> Result:
    counter = iter(range(10**9))
    ok = errors = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal ok, errors
        while time.perf_counter() < deadline:
            payload = make(next(counter))
            t0 = time.perf_counter()
            try:
                status = await _one(host, port, payload)
            except OSError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if status == 200:
                ok += 1
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Result(ok + errors, ok, errors, time.perf_counter() - start, tuple(latencies))


async def _open(host: str, port: int, make: Callable[[int], bytes], rate: float, seconds: float,
                seed: int, timeout: float | None) -> Result:
    rng = random.Random(seed)
    ok = errors = 0
    latencies: list[float] = []
    tasks = []
    start = time.perf_counter()

    async def fire(n: int, scheduled: float) -> None:
        nonlocal ok, errors
        try:
            status = await asyncio.wait_for(_one(host, port, make(n)), timeout)
        except (OSError, asyncio.TimeoutError):
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)
        if status == 200:
            ok += 1
        else:
            errors += 1

    at, n = start, 0
    while at - start < seconds:
        at += rng.expovariate(rate)
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(n, at)))
        n += 1
    await asyncio.gather(*tasks)
    return Result(n, ok, errors, time.perf_counter() - start, tuple(latencies))


def closed_loop(host: str, port: int, make: Callable[[int], bytes], *, concurrency: int,
                seconds: float) -> Result:
    return asyncio.run(_closed(host, port, make, concurrency, seconds))


def open_loop(host: str, port: int, make: Callable[[int], bytes], *, rate: float, seconds: float,
              seed: int = 1, timeout: float | None = None) -> Result:
    """Poisson arrivals at `rate` for `seconds`; a request not answered within `timeout`
    seconds (if given) counts as an error."""
    return asyncio.run(_open(host, port, make, rate, seconds, seed, timeout))
