"""Work started at the same moment in several threads, for the tests of what happens
when processes or workers race (migrations, imports, claims, conversions, accepts)."""
from __future__ import annotations

import threading
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def at_once(work: Callable[[T], R], args: Sequence[T], *, timeout: float = 60) -> tuple[list[R], list[Exception]]:
    """Run `work(arg)` for each of `args`, each in a thread of its own, all released by
    one barrier; return what they returned (in the order of `args`; None for a call that
    raised) and what they raised. A thread still running after `timeout` seconds fails
    the test."""
    barrier = threading.Barrier(len(args))
    results: list = [None] * len(args)
    errors: list[Exception] = []

    def run(n: int, arg: T) -> None:
        barrier.wait(timeout)
        try:
            results[n] = work(arg)
        except Exception as exc:  # returned to the test, which asserts on it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, arg)) for n, arg in enumerate(args)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), f"a thread still ran after {timeout} s"
    return results, errors
