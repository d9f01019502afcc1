"""What each Kubeflow component of the level-2 pipeline does, between its artifacts and the
steps of :mod:`level2_training.steps` (the same steps the Prefect flow runs).

A component runs in a process (a pod on a cluster) of its own: it gets parameters (JSON
values) and artifact paths, not Python objects. These adapters turn the one into the other:
frames travel as Parquet datasets, a data input's validation record as the dataset's
metadata, a family's search result as a small JSON artifact, and models as MLflow models.
The run's configuration travels as the :class:`~level2_training.config.TrainingConfig` JSON
that the ``configure`` component validates once. The data components (load, validate, gather,
the held-back month) use :mod:`level2_training.kfp_data_steps`, which imports neither MLflow
nor scikit-learn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient

from level2_training import steps, tracking
from level2_training.config import TrainingConfig
from level2_training.data_inputs import DataInput, data_digest

# re-exported: the other components read their artifacts through these
from level2_training.kfp_data_steps import Stored as Stored
from level2_training.kfp_data_steps import stored as stored
from level2_training.kfp_data_steps import text as text
from level2_training.results import HeldOut
from level2_training.search import TrialResult
from level2_training.steps import Searched
from shared.models import BASELINE_FAMILY

#: the MLflow tag that finds a Kubeflow run's parent run (the CLI reads its result by it)
RUN_KEY_TAG = "kfp_run_key"


def records(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The families' search records (JSON artifacts)."""
    return [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]


def configure(arguments: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    """The pipeline's parameters as one validated :class:`TrainingConfig` (JSON), the
    families it trains (the baseline first), and the TLC columns they read (the data
    components load only those, and need no model code to know which). A bad value fails
    here, naming the field."""
    # an empty value is an unset one (a KFP parameter holds no null): its default applies
    values = {k: v for k, v in arguments.items() if v not in ("", None, {})}
    config = TrainingConfig.model_validate(values)
    families = steps.families_of(config)
    return config.model_dump_json(), families, steps.needed_columns(families)


def pipeline_arguments(config: TrainingConfig, run_key: str, tracking_uri: str) -> dict[str, Any]:
    """The inverse of :func:`configure`: a config as the pipeline's parameters (what
    ``level2 kfp run`` submits, and what a run on a cluster needs)."""
    data = json.loads(config.model_dump_json())
    arguments = {
        # a KFP parameter holds no null: an unset field is left out (its default returns)
        "train_sources": [_without_nulls(s) for s in data["train"]],
        "val_source": _without_nulls(data["val"]),
        "test_source": _without_nulls(data["test"]) if data["test"] else {},
        "families": data["families"],
        "trials": data["trials"],
        "seed": data["seed"],
        "margin": data["margin"],
        "bounds": data["bounds"],
        "experiment": data["experiment"],
        "registered_model": data["registered_model"],
        "artifact_location": data["artifact_location"] or "",
        "cache_dir": data["cache_dir"] or "",
        "timeout_s": data["timeout_s"],
        "actor": data["actor"],
        "reference_rows": data["reference_rows"],
    }
    return {**arguments, "run_key": run_key, "tracking_uri": tracking_uri}


def _without_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def config_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline's parameters renamed to :class:`TrainingConfig`'s fields."""
    renamed = {"train_sources": "train", "val_source": "val", "test_source": "test"}
    return {renamed.get(k, k): v for k, v in arguments.items()}


def use_tracking(tracking_uri: str) -> None:
    """A component's MLflow server: the pipeline's parameter, else the environment's."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)


def frames(train: Stored, val: Stored) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The training months (gathered) and the validation month, as frames."""
    files = sorted(Path(train.path).glob("*.parquet"))
    return [pd.read_parquet(f) for f in files], pd.read_parquet(val.path)


def digest(train: Stored, val: Stored, test: Stored | None = None) -> dict[str, Any]:
    """The data digest the Prefect flow computes, from the validation records (in its order:
    the training months, the validation month, the test month)."""
    inputs = [m["data_input"] for m in train.metadata["months"]] + [val.metadata["data_input"]]
    inputs += [m["data_input"] for m in test.metadata["months"]] if test is not None else []
    return data_digest([DataInput.from_dict(i) for i in inputs])


def start_run(
    config_json: str, run_key: str, train: Stored, val: Stored, test: Stored
) -> tuple[str, str]:
    """The run's MLflow parent run: (experiment id, parent run id)."""
    config = TrainingConfig.model_validate_json(config_json)
    tags = {RUN_KEY_TAG: run_key, "orchestrator": "kubeflow"}
    families = steps.families_of(config)
    return steps.start_parent_run(
        config, families, digest(train, val, test), tracking.git_info(), tags
    )


def train_family(
    config_json: str,
    family: str,
    data: tuple[Stored, Stored, Stored],
    ids: tuple[str, str],
) -> dict[str, Any]:
    """Featurize for one family and search it (a nested MLflow run per trial); the best
    trial's record is returned for the searched-result artifact."""
    config = TrainingConfig.model_validate_json(config_json)
    train, val, test = data
    train_frames, val_frame = frames(train, val)
    featurized = steps.featurize(train_frames, val_frame, [family])[family]
    best, run_id, model_uri = steps.train(
        family,
        featurized,
        trials=steps.trials_for(config, family),
        seed=config.seed,
        experiment_id=ids[0],
        parent_run_id=ids[1],
        digest=digest(train, val, test),
        git=tracking.git_info(),
    )
    # field by field: asdict() would deep-copy the fitted model only to drop it
    record = {f.name: getattr(best, f.name) for f in fields(best) if f.name != "pipeline"}
    return {**record, "run_id": run_id, "model_uri": model_uri}


def _searched(record: Mapping[str, Any]) -> Searched:
    trial = {k: v for k, v in record.items() if k not in ("run_id", "model_uri")}
    return TrialResult(**trial, pipeline=None), record["run_id"], record["model_uri"]


def _with_model(searched: Searched) -> Searched:
    """A search result with its model, loaded from MLflow."""
    trial, run_id, model_uri = searched
    return replace(trial, pipeline=mlflow.sklearn.load_model(model_uri)), run_id, model_uri


def results_of(config: TrainingConfig, records: Sequence[Mapping[str, Any]]) -> dict[str, Searched]:
    """Every family's search result (without its model), in the order the run trains them."""
    by_family = {r["family"]: r for r in records}
    return {f: _searched(by_family[f]) for f in steps.families_of(config)}


def select_best(
    config_json: str, records: Sequence[Mapping[str, Any]], train: Stored, val: Stored
) -> dict[str, Any]:
    """Choose the winner and log the data it learned from as the monitoring reference."""
    config = TrainingConfig.model_validate_json(config_json)
    best = _with_model(steps.choose(config, results_of(config, records)))
    train_frames, _ = frames(train, val)
    steps.log_reference(best[1], best[0], train_frames, config.reference_rows, config.seed)
    return {"family": best[0].family, "run_id": best[1], "model_uri": best[2]}


def score_held_out(
    config_json: str, records: Sequence[Mapping[str, Any]], test: Stored
) -> dict[str, Any]:
    """The chosen model and the baseline on the held-back test month ({} without one)."""
    config = TrainingConfig.model_validate_json(config_json)
    if config.test is None:
        return {}
    results = results_of(config, records)
    # only the two models scored are loaded
    for family in {steps.choose(config, results)[0].family, BASELINE_FAMILY}:
        results[family] = _with_model(results[family])
    chosen = steps.choose(config, results)
    frame = pd.read_parquet(Path(test.path) / "000.parquet")
    return asdict(steps.score_held_out(results, chosen, frame, config.test))


def evaluate_incumbent(config_json: str, val: Stored) -> dict[str, Any]:
    """The incumbent's RMSE on this run's validation month (none without an incumbent)."""
    config = TrainingConfig.model_validate_json(config_json)
    version, rmse = steps.evaluate_champion(
        config.registered_model, pd.read_parquet(val.path), config.incumbent_version
    )
    return {"version": version, "rmse": rmse}


def gate_and_register(
    config_json: str,
    records: Sequence[Mapping[str, Any]],
    scores: tuple[Mapping[str, Any], Mapping[str, Any]],
    ids: tuple[str, str],
    data: tuple[Stored, Stored, Stored],
) -> dict[str, Any]:
    """Register the winner, move ``champion`` if it beats the incumbent by the margin, and
    record the run's result on its parent run (which then ends). ``scores`` are the
    incumbent's and the held-back month's (see :func:`evaluate_incumbent`,
    :func:`score_held_out`)."""
    config = TrainingConfig.model_validate_json(config_json)
    results = results_of(config, records)
    chosen = steps.choose(config, results)
    incumbent, held_out = scores
    champion = (incumbent["version"], incumbent["rmse"])
    registered = steps.register(config, chosen[0], chosen[2], chosen[1], ids[1], champion)
    seconds = time.time() - MlflowClient().get_run(ids[1]).info.start_time / 1000.0
    context = (digest(*data), tracking.git_info(), seconds)
    test = HeldOut(**held_out) if held_out else None
    result = steps.record_result(results, chosen, registered, ids, context, test)
    MlflowClient().set_terminated(ids[1], "FINISHED")
    return result.to_dict()


def parent_run(experiment: str, run_key: str) -> Any:
    """The MLflow parent run of the Kubeflow run ``run_key`` (None before it started)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.{RUN_KEY_TAG} = '{run_key}'", max_results=1
    )
    return runs[0] if runs else None


def finish(experiment: str, run_key: str) -> str:
    """The exit handler: a parent run still running when the pipeline ends failed on the way."""
    run = parent_run(experiment, run_key)
    if run is None:
        return "no MLflow run"
    if run.info.status == "RUNNING":
        MlflowClient().set_terminated(run.info.run_id, "FAILED")
        return "FAILED"
    return str(run.info.status)
