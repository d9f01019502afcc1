"""A background thread that each process runs once: fork() copies no thread, so a gunicorn
worker starts its own the first time it needs one, and a parent's is never shared."""

from __future__ import annotations

import os
import threading


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
