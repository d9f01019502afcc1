"""Registry rules and the alias history, against a real (SQLite) MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.dummy import DummyRegressor

from level2_training import registry

NAME = "taxi-test"


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote", "words"),
    [
        (5.0, None, 0.01, True, "no champion yet"),
        (4.0, 5.0, 0.01, True, "beats champion 5.0000 by 20.0%"),
        (4.96, 5.0, 0.01, False, "does not beat champion 5.0000 by the 1.0% margin"),
        (4.95, 5.0, 0.01, True, "by 1.0%"),
        (5.5, 5.0, 0.0, False, "needs <= 5.0000"),
    ],
)
def test_promotion_rule(
    candidate: float, champion: float | None, margin: float, promote: bool, words: str
) -> None:
    decided, why = registry.promotion_decision(candidate, champion, margin)
    assert decided is promote
    assert words in why


def _versions(client: MlflowClient, n: int, artifacts: Path) -> list[int]:
    registry.ensure_registered_model(client, NAME)
    experiment = mlflow.create_experiment("registry-test", artifact_location=artifacts.as_uri())
    out = []
    for _ in range(n):
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                DummyRegressor().fit([[0]], [1]), name="m", pip_requirements=["scikit-learn"]
            )
        out.append(int(client.create_model_version(NAME, info.model_uri).version))
    return out


def test_alias_moves_are_recorded_in_order_and_survive_a_new_client(tmp_path: Path) -> None:
    client = MlflowClient()
    v1, v2 = _versions(client, 2, tmp_path / "artifacts")
    assert registry.alias_version(client, NAME, "champion") is None
    registry.move_alias(client, NAME, "candidate", v1, reason="first", actor="test")
    registry.move_alias(client, NAME, "champion", v1, reason="no champion", actor="test")
    registry.move_alias(client, NAME, "candidate", v2, reason="second", actor="test")
    registry.keep_alias(client, NAME, "champion", reason="v2 is worse", actor="test")

    events = registry.history(MlflowClient(), NAME)  # a fresh client reads the same store
    assert [(e.alias, e.action, e.from_version, e.to_version) for e in events] == [
        ("candidate", "set", None, v1),
        ("champion", "set", None, v1),
        ("candidate", "set", v1, v2),
        ("champion", "kept", v1, v1),
    ]
    assert events[-1].reason == "v2 is worse" and events[-1].actor == "test"
    assert registry.aliases(client, NAME) == {"candidate": v2, "champion": v1}


def test_history_of_an_unknown_model_is_empty() -> None:
    assert registry.history(MlflowClient(), "no-such-model") == []
    assert registry.aliases(MlflowClient(), "no-such-model") == {}


def test_an_alias_the_model_lacks_and_a_model_the_registry_lacks_are_none(tmp_path: Path) -> None:
    client = MlflowClient()
    (v1,) = _versions(client, 1, tmp_path / "artifacts")
    registry.move_alias(client, NAME, "candidate", v1, reason="first", actor="test")
    assert registry.alias_version(client, NAME, "champion") is None
    assert registry.alias_version(client, "no-such-model", "champion") is None
    assert registry.has_version(client, NAME, v1) and not registry.has_version(client, NAME, 99)


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A client of an MLflow server that does not answer (nothing listens on the port)."""
    from shared.services import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")


@pytest.mark.parametrize(
    "lookup",
    [
        lambda c: registry.alias_version(c, NAME, "champion"),
        lambda c: registry.aliases(c, NAME),
        lambda c: registry.history(c, NAME),
        lambda c: registry.has_version(c, NAME, 1),
        lambda c: registry.ensure_registered_model(c, NAME),
    ],
    ids=["alias_version", "aliases", "history", "has_version", "ensure_registered_model"],
)
def test_a_registry_that_cannot_be_read_is_not_an_empty_one(
    unreachable: MlflowClient, lookup: object
) -> None:
    with pytest.raises(registry.RegistryUnavailableError, match="cannot read the model registry"):
        lookup(unreachable)  # type: ignore[operator]


def test_no_untested_promotion_when_the_champion_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, unreachable: MlflowClient
) -> None:
    """The training flow compares a candidate with the champion: a registry it cannot read
    must stop the flow, not read as "no champion yet" (which promotes the candidate)."""
    import pandas as pd

    from level2_training import steps

    monkeypatch.setattr(steps, "MlflowClient", lambda: unreachable)
    with pytest.raises(registry.RegistryUnavailableError):
        steps.evaluate_champion(NAME, pd.DataFrame())
