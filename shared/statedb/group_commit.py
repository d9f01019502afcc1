"""Group commit: the writes that a process's request threads make at the same time share one
transaction, and each caller returns only once its own write is committed.

Every answered prediction is logged first, so each request costs one transaction. On SQLite
there is one writer at a time: request threads queued on its lock (and its busy handler, which
sleeps 1 ms and more between tries) bounded a level-3 worker at ~500 answers per second, with a
p99 of hundreds of milliseconds. Here the first waiting thread becomes the leader: it takes
every write queued so far, runs them in one transaction, and wakes their callers; writes that
arrive meanwhile form the next batch. A caller still returns only after its rows are durable,
so "answered => logged" holds, and each write runs exactly once. If the batch fails (one
request's idempotency conflict, a bad row), each of its writes is retried in a transaction of
its own, so one request's error is never another's; an unreachable database fails them all at
once (their requests are answered 503).

PostgreSQL's own group commit (``commit_delay``) needs many connections committing at once;
this gives one connection many writes per commit, the same on both backends. There is one
leader at a time in a process, so it keeps one connection open for every batch (a checkout
from the pool and its reset cost ~17 us a transaction on SQLite); a batch that fails closes it,
and the next one opens a fresh connection.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from shared.statedb.database import Database, StateUnavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


@dataclass
class _Queue(Generic[T, R]):
    """One process's queue (rebuilt after fork(): a copied lock may be held by a dead thread)."""

    pid: int = field(default_factory=os.getpid)
    cond: threading.Condition = field(default_factory=threading.Condition)
    waiting: list[_Pending[T, R]] = field(default_factory=list)
    flushing: bool = False
    #: the leader's connection, kept between batches
    conn: Connection | None = None


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        db: Database,
        write: Callable[[Any, list[T]], list[R]],
        transaction: Callable[[Connection], AbstractContextManager[Any]] | None = None,
    ) -> None:
        """``write`` writes a batch of items in the transaction it is given (one statement for
        all of them where it can: a statement costs far more than a row) and returns each
        item's result. ``transaction`` opens that transaction on the leader's connection and
        gives ``write`` what it writes with: ``db.write`` (SQLAlchemy's) by default, or
        ``db.driver_write`` (SQLite's driver connection itself)."""
        self.db = db
        self.write = write
        self.transaction = transaction or db.write
        self._queue: _Queue[T, R] = _Queue()
        #: transactions and writes so far in this process (for tests and benchmarks)
        self.batches = 0
        self.writes = 0

    def submit(self, item: T) -> R:
        """Write ``item`` (in a transaction shared with concurrent callers); its result, or
        the exception its write raised."""
        queue = self._process_queue()
        pending: _Pending[T, R] = _Pending(item)
        with queue.cond:
            queue.waiting.append(pending)
            while not pending.done:
                if queue.flushing:
                    queue.cond.wait()
                    continue
                batch, queue.waiting, queue.flushing = queue.waiting, [], True
                queue.cond.release()
                try:
                    self._flush(queue, batch)
                finally:
                    queue.cond.acquire()
                    queue.flushing = False
                    queue.cond.notify_all()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _process_queue(self) -> _Queue[T, R]:
        if self._queue.pid != os.getpid():
            self._queue = _Queue()
        return self._queue

    def _flush(self, queue: _Queue[T, R], batch: list[_Pending[T, R]]) -> None:
        self.batches += 1
        self.writes += len(batch)
        try:
            results = self._transaction(queue, [pending.item for pending in batch])
        except StateUnavailable as exc:
            for pending in batch:
                pending.error, pending.done = exc, True
            return
        except Exception as exc:
            if len(batch) == 1:  # its own transaction already: its error is its answer
                batch[0].error, batch[0].done = exc, True
                return
            for pending in batch:
                self._one(queue, pending)
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result, pending.done = result, True

    def _one(self, queue: _Queue[T, R], pending: _Pending[T, R]) -> None:
        try:
            (pending.result,) = self._transaction(queue, [pending.item])
        except Exception as exc:  # the caller's own error, raised in the caller's thread
            pending.error = exc
        pending.done = True

    def _transaction(self, queue: _Queue[T, R], items: list[T]) -> list[R]:
        """``items`` written in one transaction on the leader's connection; after a failure
        the connection is closed (it may be the one a restarted server left dead)."""
        if queue.conn is None:
            queue.conn = self.db.writer_connection()
        try:
            with self.transaction(queue.conn) as conn:
                return self.write(conn, items)
        except BaseException:
            conn, queue.conn = queue.conn, None
            with contextlib.suppress(SQLAlchemyError):  # a connection that is already gone
                conn.close()
            raise
