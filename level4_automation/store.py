"""Level 4's own records in the state database: the monitoring time series (one row per
window), the audit log of decisions (each with what became of its alert), and the loop's state
between windows.

A cycle holds an exclusive lock, so two schedulers (or a scheduled run and a manual one, on one
machine or two) cannot act on the same deployment at once: an advisory lock on PostgreSQL, a
lock file beside the SQLite file otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from level4_automation.monitor import WindowMetrics
from shared.errors import TaxiMlopsError
from shared.statedb import Database, tables
from shared.statedb.database import LockHeld
from shared.statedb.tables import upsert

D = tables.decisions
S = tables.loop_state
W = tables.windows

#: the name of the lock a monitoring cycle holds
CYCLE_LOCK = "level4-cycle"


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
    #: windows since the last retraining began (the refresh rule's clock)
    since_retrain: int = 0

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


class MonitoringStore:
    def __init__(self, db: Database | str | Path) -> None:
        self.db = db if isinstance(db, Database) else Database(db, busy_timeout_s=30)
        self.db.migrate("loop")

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            with self.db.exclusive(CYCLE_LOCK):
                yield
        except LockHeld as exc:
            raise BusyError(
                f"another monitoring cycle is running ({exc}); try again later"
            ) from None

    # ------------------------------------------------------------------------ windows

    def save_window(self, metrics: WindowMetrics) -> None:
        statement = upsert(self.db.dialect, W, "start", ["end", "metrics", "recorded_at"])
        with self.db.write() as conn:
            conn.execute(
                statement,
                {
                    "start": metrics.start,
                    "end": metrics.end,
                    "metrics": json.dumps(metrics.to_dict()),
                    "recorded_at": time.time(),
                },
            )

    def windows(self) -> list[WindowMetrics]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(W.c.metrics).order_by(W.c.start)).all()
        return [WindowMetrics.from_dict(json.loads(r[0])) for r in rows]

    # ---------------------------------------------------------------------- decisions

    def record(self, decision: Decision) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.insert(D).values(
                    window_start=decision.window_start,
                    action=decision.action,
                    rule=decision.rule,
                    reason=decision.reason,
                    details=json.dumps(decision.details, sort_keys=True),
                    recorded_at=time.time(),
                )
            )

    def decisions(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(D).order_by(D.c.id)).mappings().all()
        return [{**row, "details": json.loads(row["details"])} for row in rows]

    # -------------------------------------------------------------------------- state

    def state(self) -> LoopState:
        with self.db.read() as conn:
            row = conn.execute(sa.select(S.c.state).where(S.c.id == 1)).first()
        return LoopState(**json.loads(row[0])) if row else LoopState()

    def save_state(self, state: LoopState) -> None:
        statement = upsert(self.db.dialect, S, "id", ["state"])
        with self.db.write() as conn:
            conn.execute(statement, {"id": 1, "state": json.dumps(state.to_dict())})
