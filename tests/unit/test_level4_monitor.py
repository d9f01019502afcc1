"""One monitoring window on small frames: drift, error, data quality, reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level4_automation.monitor import monitor_window, trips_frame
from level4_automation.policy import DriftPolicy
from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET
from shared.data.validate import ValidationBounds


def reference(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = rng.uniform(5, 30, n)
    return pd.DataFrame(
        {
            PU: rng.integers(100, 110, n),
            DO: rng.integers(200, 210, n),
            DISTANCE: rng.exponential(2.5, n),
            PICKUP: pd.Timestamp("2019-01-01")
            + pd.to_timedelta(rng.integers(0, 86400 * 28, n), "s"),
            TARGET: minutes,
            "prediction": minutes + rng.normal(0, 2, n),
        }
    )


def log_window(
    n: int = 3000,
    seed: int = 1,
    *,
    distance_factor: float = 1.0,
    labelled: float = 1.0,
    error: float = 2.0,
    version: str = "1",
) -> pd.DataFrame:
    """Rows shaped like :meth:`PredictionLog.window`."""
    rng = np.random.default_rng(seed)
    actual = rng.uniform(5, 30, n)
    frame = pd.DataFrame(
        {
            "prediction_id": [f"p{i}" for i in range(n)],
            "event_time": (
                pd.Timestamp("2019-02-01") + pd.to_timedelta(rng.integers(0, 86400 * 27, n), "s")
            ).strftime("%Y-%m-%dT%H:%M:%S"),
            "request_key": [f"k{i}" for i in range(n)],
            "variant": "blue",
            "shadow": 0,
            "model_version": version,
            PU: rng.integers(100, 110, n),
            DO: rng.integers(200, 210, n),
            DISTANCE: rng.exponential(2.5, n) * distance_factor,
            "prediction": actual + rng.normal(0, error, n),
            "actual": actual,
        }
    )
    frame.loc[frame.index[int(n * labelled) :], "actual"] = np.nan
    return frame


def measure(window: pd.DataFrame, report_dir: Path | None = None, refused: dict | None = None):
    return monitor_window(
        window,
        reference(),
        start="2019-02-01T00:00:00",
        end="2019-03-01T00:00:00",
        refused=refused or {},
        drift=DriftPolicy(),
        min_labels=500,
        bounds=ValidationBounds(),
        report_dir=report_dir,
    )


def test_same_distribution_no_drift_and_exact_error(tmp_path: Path) -> None:
    window = log_window()
    metrics = measure(window, tmp_path)
    assert not metrics.data_drift and metrics.drifted_columns == []
    expected = float(np.sqrt(np.mean((window["prediction"] - window["actual"]) ** 2)))
    assert metrics.rmse == pytest.approx(expected)
    assert metrics.per_version["1"]["rows"] == 3000
    assert Path(metrics.reports["drift"]).stat().st_size > 10_000
    assert Path(metrics.reports["quality"]).exists()


def test_longer_trips_drift_the_distance_column() -> None:
    metrics = measure(log_window(distance_factor=2.0))
    assert "trip_distance" in metrics.drifted_columns
    assert metrics.drift_scores["trip_distance"] > 0.1


def test_without_enough_labels_there_is_no_error_measurement() -> None:
    metrics = measure(log_window(labelled=0.1))
    assert metrics.labelled == 300 and metrics.rmse is None


def test_refused_rides_and_garbage_labels_make_the_invalid_share() -> None:
    window = log_window(n=1000)
    window.loc[:99, "actual"] = 0.0  # zero-minute labels: glitches
    metrics = measure(window, refused={"/predict": 50, "/feedback": 25})
    assert metrics.invalid_labels["duration_not_positive"] == 100
    assert metrics.invalid_share == pytest.approx((50 + 25 + 100) / 1050)
    assert metrics.valid_labelled == 900


def test_trips_frame_rebuilds_dropoff_from_the_label() -> None:
    trips = trips_frame(log_window(n=3, labelled=1.0))
    minutes = (trips["dropoff_datetime"] - trips["pickup_datetime"]).dt.total_seconds() / 60
    assert minutes.round(6).tolist() == log_window(n=3)["actual"].round(6).tolist()
