"""One loop cycle with the real log and store, and fakes for level 3 and retraining: the side
effects each decision must (and must not) have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from level2_training.results import (
    Baseline,
    BestModel,
    PreviousChampion,
    Registration,
    TrainingResult,
)
from level3_deployment.prediction_log import PredictionLog, PredictionRecord
from level4_automation import loop
from level4_automation.alerts import Alerter
from level4_automation.controller import Deployment
from level4_automation.policy import Policy
from level4_automation.store import MonitoringStore
from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET
from shared.data.validate import ValidationReport
from shared.errors import DataQualityError

START, END = "2019-02-01T00:00:00", "2019-03-01T00:00:00"


class FakeLevel3:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.blue = 1
        self.green: int | None = None
        #: what settle() raises (a worker that never applies the change), if anything
        self.unsettled: Exception | None = None

    def deployment(self) -> Deployment:
        return Deployment(self.blue, self.green, 20.0 if self.green else 0.0)

    def deploy(self, version: int, percent: float, mode: str, reason: str) -> dict:
        self.calls.append(("deploy", version, percent))
        self.green = version
        return {}

    def promote(self, reason: str) -> dict:
        self.calls.append(("promote",))
        return {}

    def rollback(self, reason: str) -> dict:
        self.calls.append(("rollback",))
        return {}

    def settle(self, timeout_s: float) -> None:
        self.calls.append(("settle", timeout_s))
        if self.unsettled is not None:
            raise self.unsettled

    def ab_report(
        self, min_samples: int, confidence: float = 0.95, sequential: object = None
    ) -> dict:
        return {"verdict": None, "reason": "too early", "variants": {}, "comparison": None}


def reference(_: int) -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(0)
    n = 2000
    minutes = rng.uniform(5, 30, n)
    frame = pd.DataFrame(
        {
            PU: rng.integers(100, 110, n),
            DO: rng.integers(200, 210, n),
            DISTANCE: rng.exponential(2.5, n),
            PICKUP: pd.Timestamp("2019-01-03") + pd.to_timedelta(rng.integers(0, 10**6, n), "s"),
            TARGET: minutes,
            "prediction": minutes,
        }
    )
    return frame, 2.0


def fill(log: PredictionLog, n: int = 1500, error: float = 6.0) -> None:
    rng = np.random.default_rng(1)
    actual = rng.uniform(5, 30, n)
    pickups = pd.Timestamp("2019-02-02") + pd.to_timedelta(rng.integers(0, 10**6, n), "s")
    log.append(
        PredictionRecord(
            f"r{i}",
            "blue",
            "1",
            {
                PU: int(rng.integers(100, 110)),
                DO: int(rng.integers(200, 210)),
                DISTANCE: float(rng.exponential(2.5)),
                PICKUP: pickups[i].strftime("%Y-%m-%dT%H:%M:%S"),
            },
            float(actual[i] + rng.normal(0, error)),
            1.0,
        )
        for i in range(n)
    )
    log.record_feedback_batch([(f"r{i}", float(actual[i])) for i in range(n)])


@pytest.fixture
def context(tmp_path: Path):
    log = PredictionLog(tmp_path / "p.db")
    fill(log)
    level3 = FakeLevel3()
    trained: list[loop.RetrainRequest] = []
    outcome: dict[str, Any] = {}

    def retrain(request: loop.RetrainRequest) -> TrainingResult:
        trained.append(request)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    ctx = loop.LoopContext(
        policy=Policy(),
        log=log,
        store=MonitoringStore(tmp_path / "level4" / "m.db"),
        level3=level3,  # type: ignore[arg-type]
        alerter=Alerter(),
        references=reference,
        retrain=retrain,
        work_dir=tmp_path / "level4",
    )
    yield ctx, level3, trained, outcome
    log.close()


def result(candidate_rmse: float, champion_rmse: float) -> TrainingResult:
    """What the training flow returns for a candidate v2 against the champion v1."""
    return TrainingResult(
        mlflow_run_id="run",
        experiment_id="1",
        tracking_uri="sqlite:///unused.db",
        baseline=Baseline("linear", 7.0, 5.0),
        best=BestModel("hgb", {}, candidate_rmse, 3.0, "best-run", "models:/m/2"),
        improvement_vs_baseline=1 - candidate_rmse / 7.0,
        families={},
        registered=Registration(
            "taxi-trip-duration", 2, ["candidate"], False, "left to the gate", 1,
            PreviousChampion(1, champion_rmse),
        ),
        data={},
        git={},
        seconds=1.0,
    )  # fmt: skip


def test_degradation_retrains_on_exported_labels_and_deploys_a_canary(context) -> None:
    ctx, level3, trained, outcome = context
    outcome["result"] = result(4.0, 6.0)
    answer = loop.run_cycle(ctx, START, END)
    assert answer.decision.action == "canary_deployed"
    # the decision is recorded once every worker serves the canary
    assert level3.calls == [("deploy", 2, 20.0), ("settle", 60.0)]
    assert answer.decision.details["outcome"]["every_worker_applied"] is True
    (request,) = trained
    assert request.rows == {"train": 1200, "holdout": 300}
    holdout = pd.read_parquet(request.val_file)
    assert list(holdout.columns)[:2] == ["tpep_pickup_datetime", "tpep_dropoff_datetime"]
    train = pd.read_parquet(request.train_files[0])
    assert train["tpep_pickup_datetime"].max() <= holdout["tpep_pickup_datetime"].min()
    assert ctx.store.state().phase == "canary"


def test_a_canary_some_worker_never_applies_is_recorded_and_alerted_not_raised(context) -> None:
    from level4_automation.level3_client import DeploymentError

    ctx, level3, _, outcome = context
    outcome["result"] = result(4.0, 6.0)
    level3.unsettled = DeploymentError("http://l3: 1 worker(s) applied generation 3 in 60 s")
    decision = loop.run_cycle(ctx, START, END).decision
    assert decision.action == "canary_deployed"
    assert decision.details["outcome"]["every_worker_applied"] is False
    assert "1 worker(s) applied" in decision.details["outcome"]["not_applied"]
    assert decision.details["alert"] == "logged"
    assert ctx.store.state().phase == "canary"  # the canary is deployed: it is judged next


def test_bad_training_data_blocks_the_retrain_and_alerts(context, caplog) -> None:
    ctx, level3, _, outcome = context
    report = ValidationReport(source="x", rows_in=10, rows_out=1)
    outcome["error"] = DataQualityError("x: 90% of rows are invalid", report)
    answer = loop.run_cycle(ctx, START, END)
    decision = answer.decision
    assert (decision.action, decision.rule) == ("retrain_blocked", "data_quality")
    assert decision.details["alert"] == "logged"
    assert level3.calls == []  # nothing deployed
    assert ctx.store.state().phase == "watch"
    assert "retrain_blocked" in caplog.text


def test_a_candidate_failing_the_gate_is_never_deployed(context) -> None:
    ctx, level3, _, outcome = context
    outcome["result"] = result(6.5, 6.0)
    decision = loop.run_cycle(ctx, START, END).decision
    assert (decision.action, decision.rule) == ("gate_failed", "non_inferiority")
    assert level3.calls == []
    assert ctx.store.state().cooldown_left == 1


def test_a_second_cycle_cannot_run_while_one_holds_the_lock(context) -> None:
    ctx, *_ = context
    from level4_automation.store import BusyError

    with ctx.store.locked(), pytest.raises(BusyError, match="another monitoring cycle"):
        loop.run_cycle(ctx, START, END)


def test_the_candidate_is_gated_against_the_served_blue_not_the_champion_alias(context) -> None:
    """The registry's champion alias can lag what the service serves (a blue changed by hand):
    the retraining is asked to beat the blue the level-3 service reports."""
    ctx, level3, trained, outcome = context
    level3.blue = 3
    outcome["result"] = result(4.0, 6.0)
    loop.run_cycle(ctx, START, END)
    (request,) = trained
    assert request.incumbent_version == 3
