"""Deployment state shared by every serving worker: which version is blue, which is green, and
how traffic is split. One SQLite row per generation (append-only, so the past is kept);
workers poll the latest generation and apply it.

The transitions are pure functions; :class:`StateStore` writes them with a compare-and-swap on
the generation, so two operators cannot silently overwrite each other's change.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from level3_deployment.routing import Mode, SplitPolicy
from shared.errors import TaxiMlopsError
from shared.sqlite_store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deployment (
    generation INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    ts REAL NOT NULL
);
"""


def store_paths(home: Path) -> tuple[Path, Path]:
    """The deployment state and the prediction log of a TAXI_MLOPS_HOME."""
    return home / "level3" / "deployment.db", home / "level3" / "predictions.db"


class ConflictError(TaxiMlopsError):
    """The change does not fit the deployment as it is (HTTP 409): someone else changed it
    first, or there is no green to split, promote or roll back."""


@dataclass(frozen=True)
class DeploymentState:
    blue: int | None = None
    green: int | None = None
    mode: Mode = Mode.OFF
    green_percent: float = 0.0
    #: the blue version before the last promotion, so a rollback can restore it
    previous_blue: int | None = None
    generation: int = 0
    reason: str = "initial"
    actor: str = ""

    @property
    def policy(self) -> SplitPolicy:
        if self.green is None:
            return SplitPolicy(Mode.OFF, 0.0)
        return SplitPolicy(self.mode, self.green_percent)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "mode": str(self.mode)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DeploymentState:
        return cls(**{**data, "mode": Mode(data["mode"])})  # type: ignore[arg-type]


# ------------------------------------------------------------------ transitions (pure)


def start(state: DeploymentState, blue: int, reason: str, actor: str) -> DeploymentState:
    return replace(
        state,
        blue=blue,
        green=None,
        mode=Mode.OFF,
        green_percent=0.0,
        previous_blue=None,
        reason=reason,
        actor=actor,
    )


def deploy(
    state: DeploymentState, version: int, percent: float, mode: Mode, reason: str, actor: str
) -> DeploymentState:
    if state.blue is None:
        raise ConflictError("no blue model yet: start the service with a champion first")
    if version == state.blue:
        raise ConflictError(f"v{version} is already blue")
    SplitPolicy(mode, percent)  # validates the share
    return replace(
        state,
        green=version,
        mode=mode,
        green_percent=percent,
        previous_blue=None,
        reason=reason,
        actor=actor,
    )


def set_split(
    state: DeploymentState, percent: float, mode: Mode, reason: str, actor: str
) -> DeploymentState:
    if state.green is None:
        raise ConflictError("no green model: deploy one first")
    SplitPolicy(mode, percent)
    return replace(state, mode=mode, green_percent=percent, reason=reason, actor=actor)


def promote(state: DeploymentState, reason: str, actor: str) -> DeploymentState:
    if state.green is None:
        raise ConflictError("no green model to promote")
    return replace(
        state,
        blue=state.green,
        green=None,
        mode=Mode.OFF,
        green_percent=0.0,
        previous_blue=state.blue,
        reason=reason,
        actor=actor,
    )


def rollback(state: DeploymentState, reason: str, actor: str) -> DeploymentState:
    """Green gets no traffic; after a promotion, the previous blue comes back."""
    if state.previous_blue is not None:
        return replace(
            state,
            blue=state.previous_blue,
            green=state.blue,
            mode=Mode.OFF,
            green_percent=0.0,
            previous_blue=None,
            reason=reason,
            actor=actor,
        )
    if state.green is None:
        raise ConflictError("nothing to roll back")
    return replace(state, mode=Mode.OFF, green_percent=0.0, reason=reason, actor=actor)


# ------------------------------------------------------------------------------ store


class StateStore(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, timeout_s=10)

    def current(self) -> DeploymentState:
        with closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT state FROM deployment ORDER BY generation DESC LIMIT 1"
            ).fetchone()
        return DeploymentState.from_dict(json.loads(row[0])) if row else DeploymentState()

    def generation(self) -> int:
        """Cheap enough to poll often."""
        with closing(self._connect()) as conn:
            (value,) = conn.execute(
                "SELECT COALESCE(MAX(generation), 0) FROM deployment"
            ).fetchone()
        return int(value)

    def write(self, new: DeploymentState, expected_generation: int) -> DeploymentState:
        """Store ``new`` as the next generation, unless someone changed it since."""
        stored = replace(new, generation=expected_generation + 1)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            (latest,) = conn.execute(
                "SELECT COALESCE(MAX(generation), 0) FROM deployment"
            ).fetchone()
            if latest != expected_generation:
                conn.execute("ROLLBACK")
                raise ConflictError(
                    f"the deployment changed (generation {latest}, expected "
                    f"{expected_generation}); check `taxi-mlops level3 status` and retry"
                )
            conn.execute(
                "INSERT INTO deployment (generation, state, ts) VALUES (?, ?, ?)",
                (stored.generation, json.dumps(stored.to_dict()), time.time()),
            )
            conn.execute("COMMIT")
        return stored

    def pairing_since(self) -> float | None:
        """When the current blue/green pair was first put in place (None without a green):
        A/B evidence about this pair starts there."""
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT state, ts FROM deployment ORDER BY generation DESC"
            ).fetchall()
        if not rows:
            return None
        latest = json.loads(rows[0][0])
        if latest["green"] is None:
            return None
        since = rows[0][1]
        for state, ts in rows[1:]:
            data = json.loads(state)
            if (data["blue"], data["green"]) != (latest["blue"], latest["green"]):
                break
            since = ts
        return float(since)

    def history(self) -> list[DeploymentState]:
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT state FROM deployment ORDER BY generation").fetchall()
        return [DeploymentState.from_dict(json.loads(r[0])) for r in rows]
