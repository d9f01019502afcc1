"""The Kubeflow pipeline's data components, between their artifacts and the data steps
(:mod:`level2_training.data_steps`, which the Prefect flow runs too): load a month, validate it,
gather the training months, the held-back month.

Each component is a process (a pod on a cluster) of its own, and about half of a run's are
these. They import pandas and :mod:`shared.data`, not MLflow or scikit-learn (~1 s of a
process's start, against ~5 s for :mod:`level2_training.kfp_steps`). The columns to load come
from the ``configure`` component, which knows the model families.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import TypeAdapter

from level2_training import data_steps
from level2_training.config import TrainingConfig
from shared.data.load import TripMonth
from shared.data.sources import LoadedMonth, MonthSource


@dataclass(frozen=True)
class Stored:
    """An artifact as a component sees it: where its file is, and its metadata."""

    path: str
    metadata: Mapping[str, Any]


def stored(artifact: Any) -> Stored:
    """A KFP input artifact as the adapters take it."""
    return Stored(artifact.path, artifact.metadata)


def text(path: str) -> str:
    """A small text artifact's content (the config JSON)."""
    return Path(path).read_text(encoding="utf-8")


def load_month(
    config_json: str, source: Mapping[str, Any], columns: Sequence[str], path: str
) -> dict[str, Any]:
    """Load one month's ``columns`` into a Parquet file; its provenance is returned as the
    metadata."""
    config = TrainingConfig.model_validate_json(config_json)
    return _load(config, TypeAdapter(MonthSource).validate_python(source), columns, path)


def _load(
    config: TrainingConfig, month: MonthSource, columns: Sequence[str], path: str
) -> dict[str, Any]:
    loaded = data_steps.load(month, config.cache_dir, config.timeout_s, list(columns))
    loaded.trips.frame.to_parquet(path)
    trips = loaded.trips
    return {
        "source": trips.source,
        "month": trips.month,
        "taxi": trips.taxi,
        "sha256": loaded.sha256,
        "describe": month.describe(),
    }


def validate_month(config_json: str, raw: Stored, role: str, path: str) -> dict[str, Any]:
    """Validate a loaded month; the clean rows go to ``path``, the record to the metadata."""
    config = TrainingConfig.model_validate_json(config_json)
    meta = raw.metadata
    trips = TripMonth(pd.read_parquet(raw.path), meta["source"], meta["month"], meta["taxi"])
    clean, data_input = data_steps.validate(LoadedMonth(trips, meta["sha256"]), role, config.bounds)
    clean.to_parquet(path)
    return {"describe": meta["describe"], "data_input": data_input.to_dict()}


def gather_months(config_json: str, months: Sequence[Stored], path: str) -> dict[str, Any]:
    """The validated training months as one dataset: a folder of Parquet files in the
    config's order (a fan-out may collect them in any order, and the data digest and which
    rows come first depend on it), their validation records in its metadata."""
    config = TrainingConfig.model_validate_json(config_json)
    order = [s.describe() for s in config.train]
    ordered = sorted(months, key=lambda item: order.index(item.metadata["describe"]))
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for i, month in enumerate(ordered):
        shutil.copyfile(month.path, folder / f"{i:03d}.parquet")
    return {"months": [dict(m.metadata) for m in ordered]}


def held_out_month(config_json: str, columns: Sequence[str], path: str) -> dict[str, Any]:
    """The held-back test month, loaded and validated into a folder like the gathered
    training months' (empty without one: a fan-out over no months fails in KFP's local
    runner, so this one step is conditional inside)."""
    config = TrainingConfig.model_validate_json(config_json)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if config.test is None:
        return {"months": []}
    raw_path = str(folder / "raw.parquet")
    raw = Stored(raw_path, _load(config, config.test, columns, raw_path))
    meta = validate_month(config_json, raw, "test", str(folder / "000.parquet"))
    Path(raw.path).unlink()
    return {"months": [meta]}
