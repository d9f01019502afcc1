"""What every MLflow run records: data digest (built in :mod:`level2_training.data_inputs`),
code version, and a servable model.

The logged model is the whole sklearn Pipeline (featurization included), saved in the skops
format, which loads only types on an explicit allowlist, with a signature, an input example,
pinned pip requirements, and ``shared/`` as code, so `mlflow models serve` runs it as-is.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

import shared
from shared.errors import TaxiMlopsError

ROOT = Path(__file__).resolve().parents[1]
SHARED_CODE = Path(shared.__file__).resolve().parent

#: Types skops must be told to trust. Anything else in a model is refused at logging time,
#: rather than trusted blindly at loading time.
TRUSTED_TYPES = frozenset(
    {
        "shared.features.TripFeaturizer",
        "shared.features.TabularFeaturizer",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # HistGradientBoosting keeps these as its internal validation helper.
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # VotingRegressor (the hgb_ensemble family) names its fitted members in one.
        "sklearn.utils._bunch.Bunch",
    }
)


def git_info(root: Path = ROOT) -> dict[str, str]:
    def git(*args: str) -> str:
        command = ["git", *args]
        completed = subprocess.run(  # noqa: S603 - git with fixed arguments
            command, cwd=root, capture_output=True, text=True, check=False
        )
        return completed.stdout.strip() if completed.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def pip_requirements() -> list[str]:
    packages = ("scikit-learn", "numpy", "pandas", "scipy", "skops")
    return [f"{name}=={version(name)}" for name in packages]


def trusted_types(pipeline: Pipeline) -> list[str]:
    import skops.io  # ~3 s to import (it scans sklearn); only needed when logging a model

    untrusted = set(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))
    unexpected = untrusted - TRUSTED_TYPES
    if unexpected:
        raise TaxiMlopsError(
            f"model contains types not on the skops allowlist: {', '.join(sorted(unexpected))}"
        )
    return sorted(untrusted)


def log_pipeline(pipeline: Pipeline, example: pd.DataFrame) -> str:
    """Log the fitted Pipeline as this run's model; returns its ``models:/`` URI."""
    # Integers as doubles in the signature: JSON clients send 161 or 161.0 alike, and the
    # featurizers read both (an int64 schema would refuse 161.0).
    example = example.head(5)
    example = example.astype({c: "float64" for c in example.select_dtypes("integer").columns})
    signature = infer_signature(example, pipeline.predict(example))
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        code_paths=[str(SHARED_CODE)],
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted_types(pipeline),
    )
    return info.model_uri


def log_common(digest: dict[str, Any], git: dict[str, str]) -> None:
    """Data digest and code version on the active run."""
    mlflow.set_tags({**git, "data_content_hash": digest["content_hash"]})
    # several files may hold one month (level 4 trains on several windows of a month): an
    # MLflow param is written once, so each month's rows are summed first
    rows: dict[str, int] = {}
    for item in digest["inputs"]:
        key = f"data.{item['role']}.{item['month']}.rows"
        rows[key] = rows.get(key, 0) + int(item["rows_out"])
    mlflow.log_params(rows)
    mlflow.log_dict(digest, "data_digest.json")


def ensure_experiment(name: str, artifact_location: str | None) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    return experiment.experiment_id


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


REFERENCE_ARTIFACT = "reference/reference.parquet"


def log_reference(
    client: mlflow.MlflowClient,
    run_id: str,
    frame: pd.DataFrame,
    pipeline: Pipeline,
    *,
    rows: int,
    seed: int,
) -> None:
    """A fixed-size random sample of the training rows, with the model's predictions: level 4
    compares live traffic against it (data drift, prediction drift)."""
    from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET

    sample = frame.sample(n=min(rows, len(frame)), random_state=seed).sort_index()
    reference = sample[[PU, DO, DISTANCE, PICKUP, TARGET]].reset_index(drop=True)
    reference["prediction"] = pipeline.predict(sample)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(REFERENCE_ARTIFACT).name
        reference.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), str(Path(REFERENCE_ARTIFACT).parent))
