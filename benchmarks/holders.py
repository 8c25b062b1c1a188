"""Hold idle and slow-header connections open against a server, for as long as it runs:
`--idle` connections that send nothing, `--slow` ones that send one byte of a request
head that never ends every `--every` seconds. They open one after the other over
`--ramp` seconds, as clients arriving at random would; a connection the server closes
is opened again at once, so that the count stays up. Prints `ready` once all are
connected, and on SIGTERM one JSON line: how many connections the server closed, and
after how long.

    python -m benchmarks.holders --port 8000 --idle 1000 --slow 100 [--every 2] [--ramp 5]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import signal
import statistics
import time

HEAD = b"POST /webhooks/shopify/bench HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 1_000_000


async def hold(port: int, kind: str, every: float, lifetimes: list[float], connected: asyncio.Event,
               stop: asyncio.Event, delay: float) -> None:
    await asyncio.sleep(delay)
    first = True
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        if first:
            first = False
            connected.set()
        opened = time.monotonic()
        try:
            for byte in HEAD:
                if kind == "slow":
                    writer.write(bytes([byte]))
                    await writer.drain()
                try:
                    await asyncio.wait_for(reader.read(1024), every)
                    break  # closed (or answered): the server let go
                except asyncio.TimeoutError:
                    if stop.is_set():
                        break
        except OSError:
            pass
        finally:
            writer.close()
        if not stop.is_set():
            lifetimes.append(time.monotonic() - opened)


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    lifetimes: dict[str, list[float]] = {"idle": [], "slow": []}
    kinds = ["idle"] * args.idle + ["slow"] * args.slow
    random.Random(1).shuffle(kinds)
    events = [asyncio.Event() for _ in kinds]
    tasks = [asyncio.create_task(hold(args.port, kind, args.every, lifetimes[kind], event, stop,
                                      args.ramp * n / len(kinds)))
             for n, (kind, event) in enumerate(zip(kinds, events))]
    await asyncio.gather(*(event.wait() for event in events))
    print("ready", flush=True)
    await stop.wait()
    await asyncio.gather(*tasks)
    print(json.dumps({kind: {"closed_by_server": len(times),
                             "median_lifetime_s": round(statistics.median(times), 2) if times else None}
                      for kind, times in lifetimes.items()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--ramp", type=float, default=5.0)
    arguments = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a descriptor per connection
    asyncio.run(main(arguments))
