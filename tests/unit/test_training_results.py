"""The training flow's typed result (level2_training/results.py): its JSON is the shape the CLI
has always printed, and a worker's run read back from its MLflow artifact is the same result."""

from __future__ import annotations

import json

from level2_training.results import (
    Baseline,
    BestModel,
    FamilySearch,
    FlowRunRef,
    PreviousChampion,
    Registration,
    TrainingResult,
)

RESULT = TrainingResult(
    mlflow_run_id="abc",
    experiment_id="1",
    tracking_uri="sqlite:///mlflow.db",
    baseline=Baseline("linear", 6.0, 4.0),
    best=BestModel("hgb", {"learning_rate": 0.1}, 4.5, 3.1, "run-h", "models:/m-1"),
    improvement_vs_baseline=0.25,
    families={
        "linear": FamilySearch(6.0, 4.0, {}, "run-l"),
        "hgb": FamilySearch(4.5, 3.1, {"learning_rate": 0.1}, "run-h"),
    },
    registered=Registration(
        "taxi-trip-duration", 1, ["candidate", "champion"], True, "first model", 1,
        PreviousChampion(None, None),
    ),
    data={"content_hash": "h", "inputs": []},
    git={"git_commit": "c"},
    seconds=12.5,
)  # fmt: skip


def test_the_json_keeps_the_shape_consumers_read() -> None:
    out = RESULT.to_dict()
    assert list(out) == [
        "mlflow_run_id", "experiment_id", "tracking_uri", "baseline", "best",
        "improvement_vs_baseline", "families", "registered", "data", "git", "seconds",
    ]  # fmt: skip
    assert out["registered"]["previous_champion"] == {"version": None, "val_rmse": None}
    assert out["best"]["model_uri"] == "models:/m-1"
    assert "flow_run" not in out  # only a worker's run has one


def test_a_workers_run_reads_back_as_the_same_result() -> None:
    on_worker = TrainingResult(**{**RESULT.__dict__, "flow_run": FlowRunRef("id-1", "brisk-owl")})
    logged = json.loads(json.dumps(on_worker.to_dict()))
    assert TrainingResult.from_dict(logged) == on_worker
    assert TrainingResult.from_dict(json.loads(json.dumps(RESULT.to_dict()))) == RESULT
