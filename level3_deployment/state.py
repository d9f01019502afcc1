"""Deployment state shared by every serving worker: which version is blue, which is green, and
how traffic is split. One row per generation (append-only, so the past is kept) in the state
database; workers, on one machine or many, poll the latest generation and apply it.

The transitions are pure functions; :class:`StateStore` writes them with a compare-and-swap on
the generation, so two operators cannot silently overwrite each other's change.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from level3_deployment.routing import Mode, SplitPolicy
from shared.errors import TaxiMlopsError
from shared.statedb import Database, tables

T = tables.deployment


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


class StateStore:
    """The generations in the state database (a SQLite file, or PostgreSQL shared by every
    replica). The compare-and-swap holds on both: the next generation's primary key can be
    inserted only once, so of two operators changing the same generation one wins and the
    other gets a :class:`ConflictError`."""

    def __init__(self, db: Database | str | Path, *, migrate: bool = True) -> None:
        """``migrate=False``: the table is known to be current (a service's master migrated
        it), so nothing here touches the database yet."""
        self.db = db if isinstance(db, Database) else Database(db)
        if migrate:
            self.db.migrate("deployment")

    def current(self) -> DeploymentState:
        query = sa.select(T.c.state).order_by(T.c.generation.desc()).limit(1)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return DeploymentState.from_dict(json.loads(row[0])) if row else DeploymentState()

    def generation(self) -> int:
        """Cheap enough to poll often."""
        with self.db.read() as conn:
            return _latest(conn)

    def write(self, new: DeploymentState, expected_generation: int) -> DeploymentState:
        """Store ``new`` as the next generation, unless someone changed it since."""
        stored = replace(new, generation=expected_generation + 1)
        row = {"generation": stored.generation, "state": json.dumps(stored.to_dict())}
        try:
            with self.db.write() as conn:
                latest = _latest(conn)
                if latest != expected_generation:
                    raise _changed(latest, expected_generation)
                conn.execute(sa.insert(T).values(**row, ts=time.time()))
        except IntegrityError:  # another writer inserted that generation first
            raise _changed(expected_generation + 1, expected_generation) from None
        return stored

    def pairing_since(self) -> float | None:
        """When the current blue/green pair was first put in place (None without a green):
        A/B evidence about this pair starts there."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(T.c.state, T.c.ts).order_by(T.c.generation.desc())).all()
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
        with self.db.read() as conn:
            rows = conn.execute(sa.select(T.c.state).order_by(T.c.generation)).all()
        return [DeploymentState.from_dict(json.loads(r[0])) for r in rows]


def _latest(conn: Connection) -> int:
    latest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(T.c.generation), 0))).scalar()
    return int(latest or 0)


def _changed(latest: int, expected: int) -> ConflictError:
    return ConflictError(
        f"the deployment changed (generation {latest}, expected {expected}); "
        "check `taxi-mlops level3 status` and retry"
    )
