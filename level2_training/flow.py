"""The level-2 training pipeline as a Prefect flow:
load -> validate -> featurize -> train (search) -> evaluate -> gate and register.

Each task is a step of :mod:`level2_training.steps` (the Kubeflow pipeline runs the same steps
as components). The flow's MLflow run is the parent of one nested run per trial. Import this
module only after :func:`level2_training.runtime.configure` (Prefect reads its settings at
import).
"""

from __future__ import annotations

import time

import pandas as pd
from mlflow import MlflowClient
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from level2_training import data_steps, steps, tracking
from level2_training.config import TrainingConfig
from level2_training.data_inputs import DataInput, data_digest
from level2_training.results import TrainingResult
from level2_training.steps import RESULT_ARTIFACT, needed_columns

# the flow's own names, and what a deployment, level 4 and the tests import from here
__all__ = ["FLOW_NAME", "RESULT_ARTIFACT", "TrainingConfig", "training_flow"]

FLOW_NAME = "taxi-level2-training"

# Downloads and the registry are the steps that meet the network: they retry.
load = task(name="load", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)(data_steps.load)
validate = task(name="validate", cache_policy=NO_CACHE)(data_steps.validate)
featurize = task(name="featurize", cache_policy=NO_CACHE)(steps.featurize)
train = task(name="train", cache_policy=NO_CACHE)(steps.train)
evaluate_champion = task(name="evaluate", cache_policy=NO_CACHE)(steps.evaluate_champion)
log_reference = task(name="reference", cache_policy=NO_CACHE)(steps.log_reference)
score_held_out = task(name="test", cache_policy=NO_CACHE)(steps.score_held_out)
register = task(name="register", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)(
    steps.register
)


@flow(name=FLOW_NAME, log_prints=False)
def training_flow(config: TrainingConfig) -> TrainingResult:
    started = time.perf_counter()
    families = steps.families_of(config)
    train_frames, val_frame, test_frame, inputs = _load_all(config, needed_columns(families))
    digest, git = data_digest(inputs), tracking.git_info()
    data = featurize(train_frames, val_frame, families)
    ids = steps.start_parent_run(
        config, families, digest, git, {"flow_run_id": str(flow_run.get_id())}
    )
    status = "FAILED"
    try:
        results = {
            family: train(
                family,
                data[family],
                trials=steps.trials_for(config, family),
                seed=config.seed,
                experiment_id=ids[0],
                parent_run_id=ids[1],
                digest=digest,
                git=git,
            )
            for family in families
        }
        chosen = steps.choose(config, results)
        best, best_run, best_uri = chosen
        log_reference(best_run, best, train_frames, config.reference_rows, config.seed)
        champion = evaluate_champion(config.registered_model, val_frame, config.incumbent_version)
        registered = register(config, best, best_uri, best_run, ids[1], champion)
        test = (
            None
            if config.test is None or test_frame is None
            else score_held_out(results, chosen, test_frame, config.test)
        )
        seconds = time.perf_counter() - started
        context = (digest, git, seconds)
        result = steps.record_result(results, chosen, registered, ids, context, test)
        status = "FINISHED"
    finally:
        MlflowClient().set_terminated(ids[1], status)
    return result


def _load_all(
    config: TrainingConfig, columns: list[str]
) -> tuple[list[pd.DataFrame], pd.DataFrame, pd.DataFrame | None, list[DataInput]]:
    """The training months, the validation month and the held-back test month (if any),
    loaded and validated (clean frames, and what each input was for the data digest)."""
    inputs: list[DataInput] = []
    frames: dict[str, list[pd.DataFrame]] = {"train": [], "val": [], "test": []}
    roles = [("train", s) for s in config.train] + [("val", config.val)]
    roles += [("test", config.test)] if config.test is not None else []
    for role, source in roles:
        clean, data_input = validate(
            load(source, config.cache_dir, config.timeout_s, columns), role, config.bounds
        )
        frames[role].append(clean)
        inputs.append(data_input)
    test = frames["test"][0] if frames["test"] else None
    return frames["train"], frames["val"][0], test, inputs
