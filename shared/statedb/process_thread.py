"""A background thread that each process runs once: fork() copies no thread, so a gunicorn
worker starts its own the first time it needs one, and a parent's is never shared.

fork() copies the mutexes a thread holds without the thread: a process forked while one of
its background threads is inside SQLite (which runs with the GIL released) gives its child
SQLite's internal locks held by nobody, and the child hangs at its first SQLite call (the
likely cause of a hang seen once in the tests: four processes forked beside ten idle logs'
checkpoint threads, all four blocked until their join timed out). A background thread's
SQLite work therefore runs under :func:`outside_fork`, and fork() waits for it
(``os.register_at_fork``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: held by a background thread while it is inside SQLite, and by fork() while it forks
_FORK_GUARD = threading.Lock()
os.register_at_fork(
    before=_FORK_GUARD.acquire,
    after_in_parent=_FORK_GUARD.release,
    after_in_child=_FORK_GUARD.release,
)


@contextmanager
def outside_fork() -> Iterator[None]:
    """No fork() of this process happens inside the block (a fork waits for its end). Never
    fork inside it: the fork would wait for itself."""
    with _FORK_GUARD:
        yield


class ProcessThread:
    """Subclasses give the thread's name and its loop (:meth:`_run`), which ends when the
    event it is given is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pid = 0
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def ensure_running(self) -> None:
        if self._pid == os.getpid():  # asked on hot paths: the lock only when it may start
            return
        with self._guard:
            if self._pid == os.getpid():
                return
            self._pid, self._stop = os.getpid(), threading.Event()
            threading.Thread(
                target=self._run, args=(self._stop,), name=self.name, daemon=True
            ).start()

    def stop(self) -> None:
        """Stop this process's thread (a later :meth:`ensure_running` starts a new one)."""
        with self._guard:
            self._stop.set()
            self._pid = 0

    def _run(self, stop: threading.Event) -> None:
        raise NotImplementedError
