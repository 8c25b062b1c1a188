"""Group commit: the webhook path's write transactions of one process, taken together.

A request whose writes find another request's transaction under way queues them; when
that transaction is done, the next one takes everything queued meanwhile and commits it
at once: one BEGIN and one COMMIT, and so one WAL sync on SQLite (one WAL flush on
PostgreSQL), for all of them, and the pages they share (the newest leaf of each index)
written once. Each request still returns only once its own writes are committed and
durable, with its own result: a 200 means what it meant.

Under gevent the transaction's waits (the writer lock of another process, the WAL sync)
let the process's other greenlets run on (see kwai_bridge.db.sqlite), and they are the
ones that queue; with threads, the same.

A piece of work is a function of the transaction's cursor that may run more than once:
when one piece raises, the whole transaction is rolled back and every piece runs again
in a transaction of its own, so that one poison delivery fails alone. On PostgreSQL the
pieces are statements sent together instead (`transaction`, see
kwai_bridge.outbox.single): a batch is one round trip as well as one commit.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from sqlalchemy.engine import Engine

from kwai_bridge.db import writing_cursor

#: The most pieces one transaction takes: a bound on how long the first one waits.
MAX_BATCH = 64


@dataclass(eq=False)
class _Piece:
    work: Any  # a function of the cursor, or what the transaction takes
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to run the next transaction rather than with a result
    result: Any = None
    error: BaseException | None = None


def cursor_transaction(engine: Engine) -> Callable[[Sequence[Callable[[Any], Any]]], list]:
    """Pieces that are functions of a cursor, run in one write transaction."""
    def run(works: Sequence[Callable[[Any], Any]]) -> list:
        with writing_cursor(engine) as cursor:
            return [work(cursor) for work in works]
    return run


class GroupCommit:
    """Runs pieces of write work of many threads or greenlets in shared transactions.

    `transaction(pieces)` runs the pieces of one batch in one transaction and returns
    their results in order, or raises and commits nothing; by default each piece is a
    function of the transaction's cursor."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH,
                 transaction: Callable[[Sequence[Any]], list] | None = None) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._transaction = transaction or cursor_transaction(engine)
        self._lock = threading.Lock()
        self._queue: list[_Piece] = []
        self._leading = False

    @property
    def queued(self) -> int:
        """Pieces waiting for the transaction under way to end."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Any) -> Any:
        """`work` (by default a function of the cursor) inside a committed write
        transaction; its result, or its error."""
        piece = _Piece(work)
        with self._lock:
            self._queue.append(piece)
            leading = not self._leading
            self._leading = True
        if not leading:
            piece.done.wait()
            if piece.lead:  # the transaction before ours is over: ours is next, and we run it
                self._lead()
        else:
            self._lead()
        if piece.error is not None:
            raise piece.error
        return piece.result

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        try:
            self._commit(batch)
        finally:
            for piece in batch:
                piece.done.set()
            with self._lock:
                if self._queue:
                    # Whoever queued first runs the next transaction, with whatever queued.
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False

    def _commit(self, batch: list[_Piece]) -> None:
        try:
            results = self._transaction([piece.work for piece in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # One piece failed (or the commit did): each on its own, so that only what
            # cannot be stored fails.
            for piece in batch:
                self._commit([piece])
            return
        except BaseException:  # the leader's greenlet or thread is being killed: nothing committed
            for piece in batch:
                piece.error = RuntimeError("the write transaction was interrupted")
            raise
        for piece, result in zip(batch, results):
            piece.result = result
