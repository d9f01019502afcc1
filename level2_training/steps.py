"""The level-2 training pipeline's steps, as plain functions:
load -> validate -> featurize -> train (search) -> evaluate -> gate and register
(load and validate in :mod:`level2_training.data_steps`, which imports no model code).

Two orchestrators run them: the Prefect flow (:mod:`level2_training.flow`) wraps each one in a
task, and the Kubeflow pipeline (:mod:`level2_training.kfp_pipeline`) in a component. Neither
holds step logic of its own. Each training run has one MLflow parent run with one nested run
per trial.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from level2_training import registry, tracking
from level2_training.config import TrainingConfig
from level2_training.results import (
    Baseline,
    BestModel,
    FamilySearch,
    HeldOut,
    PreviousChampion,
    Registration,
    TrainingResult,
)
from level2_training.search import TrialResult, search_family
from shared.data.schema import PICKUP
from shared.data.sources import MonthSource
from shared.evaluate import regression_metrics
from shared.features import split_xy
from shared.models import BASELINE_FAMILY, get_family

#: the flow's result, logged on its MLflow parent run: how a run submitted to a worker reports
RESULT_ARTIFACT = "flow_result.json"


def needed_columns(families: list[str]) -> list[str]:
    """The TLC columns the families read (timestamps are always read): a real month has 18."""
    columns = {c for f in families for c in get_family(f).spec.columns}
    return sorted(columns - {PICKUP})


def featurize(
    train: list[pd.DataFrame], val: pd.DataFrame, families: list[str]
) -> dict[str, tuple[tuple[pd.DataFrame, np.ndarray], tuple[pd.DataFrame, np.ndarray]]]:
    """Per family, the input columns its Pipeline reads, and the target (duration)."""
    frame = pd.concat(train, ignore_index=True) if len(train) > 1 else train[0]
    out = {}
    for family in families:
        spec = get_family(family).spec
        out[family] = (split_xy(frame, spec), split_xy(val, spec))
    return out


#: a family's search: (its best trial, that trial's run id, its model's URI)
Searched = tuple[TrialResult, str, str]


def train(
    family: str,
    data: tuple[tuple[pd.DataFrame, np.ndarray], tuple[pd.DataFrame, np.ndarray]],
    *,
    trials: int,
    seed: int,
    experiment_id: str,
    parent_run_id: str,
    digest: dict[str, Any],
    git: dict[str, str],
) -> Searched:
    """Search one family; log every trial as a nested run, and the best trial's model in its
    run. Returns (best, its run, its model).

    Only the winner's model is logged: a model costs ~1-2 s to log (skops' scan of its types,
    its signature, a copy of ``shared/``) and a few MB, and the other trials' models are never
    loaded; their parameters and metrics say what they were, and a seed reproduces any of them.
    """
    logged: dict[int, str] = {}

    def log_trial(result: TrialResult) -> None:
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{family}-trial-{result.number}",
            parent_run_id=parent_run_id,
            nested=True,
        ) as run:
            tracking.log_common(digest, git)
            mlflow.set_tags({"family": family, "trial": str(result.number)})
            mlflow.log_params({"family": family, **result.params, "seed": seed})
            mlflow.log_metrics(
                {
                    "val_rmse": result.val_metrics["rmse"],
                    "val_mae": result.val_metrics["mae"],
                    "train_rmse": result.train_metrics["rmse"],
                    "train_mae": result.train_metrics["mae"],
                    "fit_seconds": result.fit_seconds,
                }
            )
            logged[result.number] = run.info.run_id

    best = search_family(family, data[0], data[1], trials=trials, seed=seed, on_trial=log_trial)
    run_id = logged[best.number]
    with mlflow.start_run(run_id=run_id, nested=True):
        model_uri = tracking.log_pipeline(best.fitted, data[1][0])
    return best, run_id, model_uri


def evaluate_champion(
    model_name: str, val: pd.DataFrame, version: int | None = None
) -> tuple[int | None, float | None]:
    """The incumbent's RMSE on this flow's validation data: ``version`` when given (the served
    blue), else the ``champion`` alias's (None, None without one)."""
    client = MlflowClient()
    if version is None:
        version = registry.alias_version(client, model_name, registry.CHAMPION)
    if version is None:
        return None, None
    champion = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    _, y_val = split_xy(val)
    return version, regression_metrics(y_val, champion.predict(val))["rmse"]


def log_reference(
    run_id: str, best: TrialResult, train: list[pd.DataFrame], rows: int, seed: int
) -> None:
    """What the chosen model was trained on, as the reference for drift monitoring."""
    frame = pd.concat(train, ignore_index=True) if len(train) > 1 else train[0]
    tracking.log_reference(MlflowClient(), run_id, frame, best.fitted, rows=rows, seed=seed)


def register(
    config: TrainingConfig,
    best: TrialResult,
    model_uri: str,
    run_id: str,
    parent_run_id: str,
    champion: tuple[int | None, float | None],
) -> Registration:
    """Register the best model as ``candidate``; make it ``champion`` if it beats the champion."""
    client = MlflowClient()
    name = config.registered_model
    registry.ensure_registered_model(client, name)
    # mlflow.register_model (not client.create_model_version) passes the logged model's id,
    # which an MLflow server requires for a models:/m-... source.
    version = int(
        mlflow.register_model(
            model_uri,
            name,
            tags={
                "family": best.family,
                "val_rmse": f"{best.val_rmse:.6f}",
                "val_month": str(config.val.month),
                "flow_run": parent_run_id,
                "run_id": run_id,
            },
        ).version
    )
    registry.move_alias(
        client,
        name,
        registry.CANDIDATE,
        version,
        actor=config.actor,
        reason=f"best of run {parent_run_id}: {best.family}, val RMSE {best.val_rmse:.4f}",
    )
    champion_version, champion_rmse = champion
    promote, why = registry.promotion_decision(best.val_rmse, champion_rmse, config.margin)
    if champion_version is not None:
        incumbent = "champion" if config.incumbent_version is None else "served blue"
        why = f"v{version} vs {incumbent} v{champion_version}: {why}"
    if promote and not config.auto_champion and champion_version is not None:
        promote, why = False, f"{why}; champion left to the deployment gate"
    if promote:
        registry.move_alias(
            client, name, registry.CHAMPION, version, reason=why, actor=config.actor
        )
    else:
        registry.keep_alias(client, name, registry.CHAMPION, reason=why, actor=config.actor)
    return Registration(
        name=name,
        version=version,
        aliases=sorted(a for a, v in registry.aliases(client, name).items() if v == version),
        promoted=promote,
        decision=why,
        champion_version=version if promote else champion_version,
        previous_champion=PreviousChampion(champion_version, champion_rmse),
    )


def families_of(config: TrainingConfig) -> list[str]:
    """The families a run trains: the baseline first (every run measures against it), then the
    asked-for ones; an unknown name fails here, before any work."""
    families = list(dict.fromkeys([BASELINE_FAMILY, *config.families]))
    for family in families:
        get_family(family)
    return families


def trials_for(config: TrainingConfig, family: str) -> int:
    """The baseline has nothing to search: one trial."""
    return 1 if family == BASELINE_FAMILY else config.trials


def start_parent_run(
    config: TrainingConfig,
    families: list[str],
    digest: dict[str, Any],
    git: dict[str, str],
    tags: dict[str, str],
) -> tuple[str, str]:
    """The run's MLflow parent run, with the data digest, code version and run parameters:
    (experiment id, parent run id). ``tags`` say which orchestrator's run it is."""
    experiment_id = tracking.ensure_experiment(config.experiment, config.artifact_location)
    parent_id = (
        MlflowClient()
        .create_run(
            experiment_id,
            run_name=f"level2-{config.val.month}",
            tags={**git, **tags, "actor": config.actor},
        )
        .info.run_id
    )
    with mlflow.start_run(run_id=parent_id):
        tracking.log_common(digest, git)
        mlflow.log_params(_run_params(config, families))
    return experiment_id, parent_id


def choose(config: TrainingConfig, results: dict[str, Searched]) -> Searched:
    """The search result that goes to the gate (see :func:`best_family`)."""
    return results[best_family(results, config.families, list(results))]


def score_held_out(
    results: dict[str, Searched], chosen: Searched, test: pd.DataFrame, source: MonthSource
) -> HeldOut:
    """The chosen model and the baseline on the held-back month, after the choice (nothing
    here feeds back into it)."""
    _, y_test = split_xy(test)
    best = regression_metrics(y_test, chosen[0].fitted.predict(test))["rmse"]
    baseline = results[BASELINE_FAMILY][0].fitted.predict(test)
    return HeldOut(
        source.describe(),
        source.month,
        len(test),
        regression_metrics(y_test, baseline)["rmse"],
        best,
    )


def record_result(
    results: dict[str, Searched],
    chosen: Searched,
    registered: Registration,
    ids: tuple[str, str],
    context: tuple[dict[str, Any], dict[str, str], float],
    test: HeldOut | None = None,
) -> TrainingResult:
    """The run's result, logged on its parent run (metrics, and the whole result as
    :data:`RESULT_ARTIFACT`, which is how a run on a worker or a cluster reports back).
    ``ids`` are (experiment, parent run); ``context`` is (data digest, code version, seconds
    the run took)."""
    experiment_id, parent_id = ids
    digest, git, seconds = context
    client = MlflowClient()
    _log_outcome(client, parent_id, results[BASELINE_FAMILY][0], chosen[0], registered)
    result = TrainingResult(
        parent_id,
        experiment_id,
        mlflow.get_tracking_uri(),
        *_scores(results, chosen),
        registered=registered,
        data=digest,
        git=git,
        seconds=round(seconds, 2),
        test=test,
    )
    if test is not None:
        client.log_metric(parent_id, "test_rmse", test.best_rmse)
        client.log_metric(parent_id, "baseline_test_rmse", test.baseline_rmse)
        client.set_tag(parent_id, "test_month", str(test.month))
    client.log_text(parent_id, json.dumps(result.to_dict(), indent=2, default=str), RESULT_ARTIFACT)
    return result


def _run_params(config: TrainingConfig, families: list[str]) -> dict[str, Any]:
    return {
        "families": ",".join(families),
        "trials": config.trials,
        "seed": config.seed,
        "margin": config.margin,
        "val_source": config.val.describe(),
        **({"test_source": config.test.describe()} if config.test else {}),
        "train_sources": ";".join(s.describe() for s in config.train),
    }


def best_family(results: dict[str, Searched], asked: list[str], families: list[str]) -> str:
    """The asked-for family with the lowest validation RMSE (the baseline when none was asked);
    RMSEs equal to 9 decimals go to the family listed first, whatever the CPU's last digits."""
    candidates = asked or [BASELINE_FAMILY]
    return min(candidates, key=lambda f: (round(results[f][0].val_rmse, 9), families.index(f)))


def _scores(
    results: dict[str, Searched], chosen: Searched
) -> tuple[Baseline, BestModel, float, dict[str, FamilySearch]]:
    """The baseline's score, the winner, its gain on the baseline, every family's best."""
    baseline = results[BASELINE_FAMILY][0]
    best, run_id, model_uri = chosen
    mae = best.val_metrics["mae"]
    return (
        Baseline(BASELINE_FAMILY, baseline.val_rmse, baseline.val_metrics["mae"]),
        BestModel(best.family, best.params, best.val_rmse, mae, run_id, model_uri),
        1.0 - best.val_rmse / baseline.val_rmse,
        {
            f: FamilySearch(r[0].val_rmse, r[0].val_metrics["mae"], r[0].params, r[1])
            for f, r in results.items()
        },
    )


def _log_outcome(
    client: MlflowClient,
    parent_id: str,
    baseline: TrialResult,
    best: TrialResult,
    registered: Registration,
) -> None:
    client.log_metric(parent_id, "baseline_val_rmse", baseline.val_rmse)
    client.log_metric(parent_id, "best_val_rmse", best.val_rmse)
    client.log_metric(parent_id, "improvement_vs_baseline", 1.0 - best.val_rmse / baseline.val_rmse)
    client.set_tag(parent_id, "registered_version", str(registered.version))
