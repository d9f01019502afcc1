"""The monitoring flow (Prefect): observe -> decide and act, for one window of event time.

Wiring only: it builds the :class:`~level4_automation.loop.LoopContext` from settings (the
admin token is read here, never passed as a flow parameter, which Prefect would store) and runs
the two steps of :mod:`level4_automation.loop` as tasks. Retraining runs the level-2 training
flow as a subflow, so a retrain shows up in Prefect and in MLflow like any other.
Import only after :func:`level2_training.runtime.configure`.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from level2_training import runtime
from level2_training.flow import TrainingConfig, training_flow
from level2_training.results import TrainingResult
from level2_training.tracking import REFERENCE_ARTIFACT
from level3_deployment.prediction_log import PredictionLog
from level4_automation import controller as ctl
from level4_automation import loop
from level4_automation.alerts import Alerter
from level4_automation.level3_client import Level3Client
from level4_automation.monitor import WindowMetrics
from level4_automation.policy import Policy, load_policy
from level4_automation.store import Decision, MonitoringStore
from shared.data.sources import MonthSource
from shared.errors import ConfigError
from shared.settings import Settings, get_settings
from shared.statedb import state_locations


def reference_source(settings: Settings) -> loop.ReferenceSource:
    """The champion's training sample (logged by the level-2 flow), cached per version."""
    client = MlflowClient()
    cache = settings.home / "level4" / "reference"

    def load(version: int) -> tuple[pd.DataFrame, float | None]:
        model = client.get_model_version(settings.registered_model_name, str(version))
        val_rmse = float(model.tags["val_rmse"]) if "val_rmse" in model.tags else None
        path = cache / f"v{version}.parquet"
        if not path.exists():
            run_id = model.tags.get("run_id") or model.run_id
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                try:
                    local = mlflow.artifacts.download_artifacts(
                        run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
                    )
                except Exception as exc:
                    raise ConfigError(
                        f"model v{version} has no monitoring reference ({REFERENCE_ARTIFACT} in "
                        f"run {run_id}): retrain it with `taxi-mlops level2 train`"
                    ) from exc
                shutil.move(local, path)
        return pd.read_parquet(path), val_rmse

    return load


def retrainer(
    settings: Settings,
    policy: Policy,
    *,
    auto_champion: bool = False,
    actor: str = "taxi-mlops level4 (retrain on drift)",
) -> loop.Retrainer:
    """The level-2 flow on exported trip files, as the policy's ``retrain`` section says.
    ``auto_champion`` stays False for level 4: only a canary can make a champion."""

    def retrain(request: loop.RetrainRequest) -> TrainingResult:
        config = TrainingConfig(
            train=[MonthSource(str(p)) for p in request.train_files],
            val=MonthSource(str(request.val_file)),
            families=list(policy.retrain.families),
            trials=policy.retrain.trials,
            seed=policy.retrain.seed,
            margin=0.0,
            experiment=settings.experiment_name,
            registered_model=settings.registered_model_name,
            artifact_location=runtime.artifact_location(settings),
            actor=actor,
            auto_champion=auto_champion,
            incumbent_version=request.incumbent_version,
        )
        return training_flow(config)

    return retrain


def build_context(settings: Settings, policy: Policy, level3_url: str) -> loop.LoopContext:
    where = state_locations(settings.home, settings.state_url)
    if not where.present("predictions"):
        raise ConfigError(
            f"{where.predictions.removeprefix('sqlite:///')}: no prediction log yet; start "
            "`taxi-mlops level3 serve` and send traffic (or set TAXI_MLOPS_STATE_DB_URL to the "
            "database the level-3 service logs to)"
        )
    return loop.LoopContext(
        policy=policy,
        log=PredictionLog(where.predictions),
        store=MonitoringStore(where.loop),
        level3=Level3Client.of(level3_url, settings),
        alerter=Alerter(policy.alerts.webhook_url, policy.alerts.timeout_s),
        references=reference_source(settings),
        retrain=retrainer(settings, policy),
        work_dir=settings.home / "level4",
    )


@task(name="observe", cache_policy=NO_CACHE)
def observe_task(
    ctx: loop.LoopContext, start: str, end: str
) -> tuple[WindowMetrics, ctl.Deployment, float | None]:
    return loop.observe(ctx, start, end)


@task(name="decide-and-act", cache_policy=NO_CACHE)
def act_task(
    ctx: loop.LoopContext, observed: tuple[WindowMetrics, ctl.Deployment, float | None]
) -> Decision:
    return loop.act(ctx, *observed)


def last_window(hours: float, now: datetime | None = None) -> tuple[str, str]:
    end = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    start = end - timedelta(hours=hours)
    return start.isoformat(), end.isoformat()


@flow(name="taxi-level4-monitoring", log_prints=False)
def monitoring_flow(
    start: str | None = None,
    end: str | None = None,
    window_hours: float = 24.0,
    policy_path: str | None = None,
    level3_url: str = "http://127.0.0.1:8100",
) -> loop.CycleResult:
    """One window (default: the last ``window_hours`` up to now, UTC event time). A flow is
    an edge: it reads the settings, as a CLI command does."""
    settings = get_settings()
    policy = load_policy(Path(policy_path) if policy_path else None)
    if start is None or end is None:
        start, end = last_window(window_hours)
    ctx = build_context(settings, policy, level3_url)
    try:
        with ctx.store.locked():
            observed = observe_task(ctx, start, end)
            decision = act_task(ctx, observed)
        return loop.CycleResult(observed[0], decision, ctx.store.state())
    finally:
        ctx.log.close()
