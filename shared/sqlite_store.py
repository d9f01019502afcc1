"""A small SQLite file opened per use, in WAL mode: the base of the project's state stores.

Connections are opened per call and closed after it, so a store object is safe to keep across
fork() (gunicorn workers) and threads (Prefect tasks).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


class SqliteStore:
    def __init__(self, path: Path, schema: str, *, timeout_s: float = 10.0) -> None:
        self.path = path
        self._timeout_s = timeout_s
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.executescript(schema)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
