"""SQLite checkpoints off the request path.

In WAL mode a commit appends pages to the write-ahead log; a checkpoint copies them back into
the database file and syncs both (two fdatasyncs). SQLite's default runs that checkpoint inside
whichever commit pushes the log past 1,000 pages: on the level-3 service that is one request in
~200 that waits milliseconds for the disk while it holds the writer lock, and measured one-row
commits cost ~50 us instead of ~25 us on average.

The service's group-commit connection therefore turns the automatic checkpoint off
(``wal_autocheckpoint=0``: shared/statedb/database.py, ``writer_connection``), and this thread,
one per process, checkpoints every ``interval_s`` on a connection of its own.
PASSIVE mode waits for no reader or writer; the sqlite3 module releases the GIL while it runs,
so request threads keep going. Durability does not change: a commit is in the log either way.
If the thread fails it logs and retries; SQLite also checkpoints when the last connection to a
database closes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from shared.statedb.process_thread import ProcessThread, outside_fork

logger = logging.getLogger(__name__)

#: ~4 MB of log at 2,000 commits a second, the size SQLite's own 1,000-page threshold keeps
INTERVAL_S = 0.1
#: the thread's name, followed by the database's path
THREAD_NAME = "sqlite-checkpoint"


class Checkpointer(ProcessThread):
    """One background thread per process (started again after fork(), which copies no thread)."""

    def __init__(self, path: Path, busy_timeout_s: float, interval_s: float = INTERVAL_S) -> None:
        super().__init__(f"{THREAD_NAME} {path}")
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.interval_s = interval_s
        #: checkpoints run and pages copied back, in this process (for tests)
        self.runs = 0
        self.pages = 0

    def _run(self, stop: threading.Event) -> None:
        conn = None
        while not stop.wait(self.interval_s):
            try:
                with outside_fork():  # PASSIVE: never waits for a lock, so fork() waits little
                    conn = conn or self._connect()
                    checkpoint = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                _busy, _log, copied = checkpoint
                self.runs, self.pages = self.runs + 1, self.pages + max(int(copied), 0)
            except sqlite3.Error as exc:
                logger.warning("checkpoint of %s failed (will retry): %s", self.path, exc)
                _close(conn)
                conn = None
        _close(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn


def _close(conn: sqlite3.Connection | None) -> None:
    """``conn`` closed (SQLite may checkpoint as it closes: outside a fork too)."""
    if conn is not None:
        with outside_fork():
            conn.close()
