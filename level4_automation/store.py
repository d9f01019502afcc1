"""Level 4's own records, in one SQLite file under TAXI_MLOPS_HOME: the monitoring time series
(one row per window), the audit log of decisions, and the loop's state between windows.

A cycle holds an exclusive lock file, so two schedulers (or a scheduled run and a manual one)
cannot act on the same deployment at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from level4_automation.monitor import WindowMetrics
from shared.errors import TaxiMlopsError
from shared.sqlite_store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    start TEXT PRIMARY KEY,
    "end" TEXT NOT NULL,
    metrics TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    window_start TEXT NOT NULL,
    action TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS loop_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
"""


class BusyError(TaxiMlopsError):
    """Another monitoring cycle holds the lock."""


@dataclass
class LoopState:
    phase: str = "watch"  # "watch" or "canary"
    #: degraded windows in a row
    streak: int = 0
    cooldown_left: int = 0
    canary_version: int | None = None
    canary_windows: int = 0
    last_window: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    window_start: str
    action: str
    rule: str
    reason: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_path(home: Path) -> Path:
    return home / "level4" / "monitoring.db"


class MonitoringStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, timeout_s=30)

    @contextmanager
    def locked(self) -> Iterator[None]:
        lock_path = self.path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BusyError(
                    f"another monitoring cycle is running (lock {lock_path}); try again later"
                ) from None
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------ windows

    def save_window(self, metrics: WindowMetrics) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                'INSERT OR REPLACE INTO windows (start, "end", metrics, recorded_at) '
                "VALUES (?, ?, ?, ?)",
                (metrics.start, metrics.end, json.dumps(metrics.to_dict()), time.time()),
            )

    def windows(self) -> list[WindowMetrics]:
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT metrics FROM windows ORDER BY start").fetchall()
        return [WindowMetrics.from_dict(json.loads(r[0])) for r in rows]

    # ---------------------------------------------------------------------- decisions

    def record(self, decision: Decision) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                "INSERT INTO decisions (window_start, action, rule, reason, details, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    decision.window_start,
                    decision.action,
                    decision.rule,
                    decision.reason,
                    json.dumps(decision.details, sort_keys=True),
                    time.time(),
                ),
            )

    def decisions(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT id, window_start, action, rule, reason, details, recorded_at "
                "FROM decisions ORDER BY id"
            ).fetchall()
        return [
            {
                "id": r[0],
                "window_start": r[1],
                "action": r[2],
                "rule": r[3],
                "reason": r[4],
                "details": json.loads(r[5]),
                "recorded_at": r[6],
            }
            for r in rows
        ]

    # -------------------------------------------------------------------------- state

    def state(self) -> LoopState:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT state FROM loop_state WHERE id = 1").fetchone()
        return LoopState(**json.loads(row[0])) if row else LoopState()

    def save_state(self, state: LoopState) -> None:
        with closing(self._connect()) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO loop_state (id, state) VALUES (1, ?)",
                (json.dumps(state.to_dict()),),
            )
