"""The training run's configuration, validated once. Light (pydantic and the data sources, no
MLflow, no scikit-learn): every Kubeflow component reads it, each in a process of its own."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from shared.data.sources import MonthSource
from shared.data.validate import ValidationBounds


class TrainingConfig(BaseModel):
    """Everything the flow needs, passed in (the CLI builds it from settings and options)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    train: list[MonthSource]
    val: MonthSource
    #: a held-back test month: scored once the model is chosen, never used to choose it
    test: MonthSource | None = None
    families: list[str] = ["linear", "ridge", "hgb"]
    trials: int = 10
    seed: int = 0
    margin: float = 0.01
    bounds: ValidationBounds = ValidationBounds()
    experiment: str = "taxi-trip-duration"
    registered_model: str = "taxi-trip-duration"
    artifact_location: str | None = None
    cache_dir: Path | None = None
    timeout_s: float = 60.0
    actor: str = "taxi-mlops level2 train"
    #: False: register the candidate but leave ``champion`` alone (level 4 lets a canary decide)
    auto_champion: bool = True
    #: rows of training data (with the model's predictions) logged as the monitoring reference
    reference_rows: int = 20_000
    #: the version the candidate must beat: level 4 passes the blue version the service
    #: serves; None: the registry's ``champion`` alias
    incumbent_version: int | None = None
