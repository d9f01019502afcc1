"""The model registry: one registered model, aliases as the only pointers, and their history.

Every alias move (and every decision *not* to move the champion) is recorded as an event in the
registry itself, as a registered-model tag ``taxi_mlops.alias_event.<time>.<id>``: one tag per
event, so concurrent writers never overwrite each other, and the history lives (and survives
restarts) wherever the registry does, embedded SQLite or an MLflow server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException

from shared.errors import TaxiMlopsError

HISTORY_PREFIX = "taxi_mlops.alias_event."
CANDIDATE = "candidate"
CHAMPION = "champion"
CHALLENGER = "challenger"  # the version level 3 serves as green

T = TypeVar("T")


class RegistryUnavailableError(TaxiMlopsError):
    """The registry could not be read (an MLflow server that does not answer, a store that
    fails): not an empty registry. A lookup that took it for one would, say, find no champion
    and promote an untested candidate."""


@dataclass(frozen=True)
class AliasEvent:
    time: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str  # "set", "kept" (a decision not to move), "removed"
    reason: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    if registered_model(client, name) is None:
        client.create_registered_model(
            name, description="NYC taxi trip duration (minutes). Aliases: champion, candidate."
        )


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version an alias points at, or None when the model or the alias is not there."""
    return aliases(client, name).get(alias)


def record_event(client: MlflowClient, name: str, event: AliasEvent) -> AliasEvent:
    key = f"{HISTORY_PREFIX}{time.time_ns():020d}.{uuid.uuid4().hex[:8]}"
    client.set_registered_model_tag(name, key, json.dumps(event.to_dict()))
    return event


def move_alias(
    client: MlflowClient, name: str, alias: str, version: int, *, reason: str, actor: str
) -> AliasEvent:
    """Point ``alias`` at ``version`` and record the move."""
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, str(version))
    event = AliasEvent(_now(), alias, previous, version, "set", reason, actor)
    return record_event(client, name, event)


def keep_alias(
    client: MlflowClient, name: str, alias: str, *, reason: str, actor: str, action: str = "kept"
) -> AliasEvent:
    """Record a change that leaves ``alias`` where it is (a decision not to move it, or a
    traffic split for the version it names)."""
    current = alias_version(client, name, alias)
    return record_event(
        client, name, AliasEvent(_now(), alias, current, current, action, reason, actor)
    )


def history(client: MlflowClient, name: str) -> list[AliasEvent]:
    """All recorded events, oldest first (none for a model the registry does not hold)."""
    model = registered_model(client, name)
    tags = {} if model is None else model.tags
    events = [
        AliasEvent(**json.loads(value))
        for key, value in sorted(tags.items())
        if key.startswith(HISTORY_PREFIX)
    ]
    return events


def _lookup(call: Callable[[], T]) -> T | None:
    """``call()``, or None when the registry holds no such model or version. Any other
    failure is :class:`RegistryUnavailableError`."""
    try:
        return call()
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise RegistryUnavailableError(f"cannot read the model registry: {exc.message}") from exc


def registered_model(client: MlflowClient, name: str) -> RegisteredModel | None:
    """``name`` as the registry holds it, or None when it holds no such model."""
    return _lookup(lambda: client.get_registered_model(name))


def has_version(client: MlflowClient, name: str, version: int) -> bool:
    """Whether the registry holds ``version`` of ``name``."""
    return _lookup(lambda: client.get_model_version(name, str(version))) is not None


def aliases(client: MlflowClient, name: str) -> dict[str, int]:
    """Each alias of ``name`` and its version (none for a model the registry does not hold).
    (The local store gives versions as integers, an MLflow server as text.)"""
    model = registered_model(client, name)
    if model is None:
        return {}
    return {alias: int(version) for alias, version in model.aliases.items()}


def promotion_decision(
    candidate_rmse: float, champion_rmse: float | None, margin: float
) -> tuple[bool, str]:
    """Whether a candidate replaces the champion, and why (a pure rule, easy to test)."""
    if champion_rmse is None:
        return True, "no champion yet"
    needed = champion_rmse * (1.0 - margin)
    if candidate_rmse <= needed:
        gain = 1.0 - candidate_rmse / champion_rmse
        return True, (
            f"candidate RMSE {candidate_rmse:.4f} beats champion {champion_rmse:.4f} by "
            f"{gain:.1%} (margin {margin:.1%})"
        )
    return False, (
        f"candidate RMSE {candidate_rmse:.4f} does not beat champion {champion_rmse:.4f} by "
        f"the {margin:.1%} margin (needs <= {needed:.4f})"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
