"""The training pipeline's data steps: load a month, validate it. Light (pandas and
:mod:`shared.data`): the Prefect flow runs them as tasks, and the Kubeflow pipeline's data
components, each a process of its own, import nothing heavier."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from level2_training.data_inputs import DataInput
from shared.data.sources import LoadedMonth, MonthSource, load_source
from shared.data.validate import ValidationBounds, validate_month


def load(
    source: MonthSource, cache_dir: Path | None, timeout_s: float, columns: list[str]
) -> LoadedMonth:
    return load_source(source, cache_dir=cache_dir, timeout_s=timeout_s, columns=columns)


def validate(
    loaded: LoadedMonth, role: str, bounds: ValidationBounds
) -> tuple[pd.DataFrame, DataInput]:
    trips = loaded.trips
    clean, report = validate_month(trips.frame, bounds, month=trips.month, source=trips.source)
    return clean, DataInput(role, trips.source, loaded.sha256, report)
