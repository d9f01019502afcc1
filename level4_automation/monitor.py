"""One monitoring window: data quality, data drift, prediction drift and model error.

Pure functions over frames (the flow reads the prediction log and the reference): the window's
served predictions with their labels where feedback has arrived, against the champion's
training sample. Drift is Evidently's (per-column scores, a seeded sample of at most
``max_rows``); error is computed exactly over every valid labelled ride.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from level4_automation.policy import DriftPolicy
from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU, TARGET
from shared.data.validate import ValidationBounds, clean_trips
from shared.evaluate import regression_metrics

logger = logging.getLogger(__name__)

HOUR = "pickup_hour"
PREDICTION = "prediction"
NUMERIC = (DISTANCE, HOUR)
CATEGORICAL = (PU, DO)
#: the quality page is a picture: its sample is smaller than the drift sample
QUALITY_REPORT_ROWS = 20_000


@dataclass
class WindowMetrics:
    start: str
    end: str
    rows: int
    labelled: int = 0
    valid_labelled: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    invalid_labels: dict[str, int] = field(default_factory=dict)
    invalid_share: float = 0.0
    missing_share: float = 0.0
    drift_scores: dict[str, float] = field(default_factory=dict)
    drifted_columns: list[str] = field(default_factory=list)
    drift_share: float = 0.0
    data_drift: bool = False
    prediction_drift_score: float | None = None
    prediction_drift: bool = False
    rmse: float | None = None
    mae: float | None = None
    per_version: dict[str, dict[str, float]] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowMetrics:
        return cls(**data)


def trips_frame(window: pd.DataFrame) -> pd.DataFrame:
    """Labelled predictions as TLC-shaped trips (dropoff = pickup + actual minutes), so the
    same validation as for training applies, and retraining can read them."""
    labelled = window[window["actual"].notna()]
    pickup = pd.to_datetime(labelled["event_time"], errors="coerce")
    return pd.DataFrame(
        {
            PICKUP: pickup.to_numpy(),
            DROPOFF: (pickup + pd.to_timedelta(labelled["actual"], unit="min")).to_numpy(),
            PU: labelled[PU].to_numpy(),
            DO: labelled[DO].to_numpy(),
            DISTANCE: labelled[DISTANCE].to_numpy(),
            PREDICTION: labelled[PREDICTION].to_numpy(),
            "model_version": labelled["model_version"].to_numpy(),
        }
    )


def _features(frame: pd.DataFrame, pickup_column: str) -> pd.DataFrame:
    pickup = pd.to_datetime(frame[pickup_column], errors="coerce")
    return pd.DataFrame(
        {
            PU: frame[PU].astype("Int64").astype(str).to_numpy(),
            DO: frame[DO].astype("Int64").astype(str).to_numpy(),
            DISTANCE: frame[DISTANCE].astype("float64").to_numpy(),
            HOUR: pickup.dt.hour.astype("float64").to_numpy(),
            PREDICTION: frame[PREDICTION].astype("float64").to_numpy(),
        }
    )


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


@dataclass(frozen=True)
class DriftFindings:
    """What Evidently found in a window against the reference (the WindowMetrics fields of the
    same names)."""

    drift_scores: dict[str, float]
    drifted_columns: list[str]
    drift_share: float
    data_drift: bool
    prediction_drift_score: float | None
    prediction_drift: bool
    missing_share: float


def drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    policy: DriftPolicy,
    report_path: Path | None,
    seed: int = 0,
) -> DriftFindings:
    """Evidently drift per column and for the predictions, plus missing values."""
    from evidently import DataDefinition, Dataset

    definition = DataDefinition(
        numerical_columns=[c for c in (*NUMERIC, PREDICTION) if c in current.columns],
        categorical_columns=[c for c in CATEGORICAL if c in current.columns],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = _drift_report(policy).run(
            reference_data=Dataset.from_pandas(reference, data_definition=definition),
            current_data=Dataset.from_pandas(
                _sample(current, policy.max_rows, seed), data_definition=definition
            ),
        )
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report_path))
    scores, prediction_score, missing_share = _drift_values(snapshot.dict()["metrics"])
    drifted = sorted(c for c, s in scores.items() if s >= policy.column_threshold)
    share = len(drifted) / len(policy.columns) if policy.columns else 0.0
    return DriftFindings(
        drift_scores={c: round(s, 6) for c, s in sorted(scores.items())},
        drifted_columns=drifted,
        drift_share=share,
        data_drift=share >= policy.drift_share,
        prediction_drift_score=(
            round(prediction_score, 6) if prediction_score is not None else None
        ),
        prediction_drift=(
            prediction_score is not None and prediction_score >= policy.prediction_threshold
        ),
        missing_share=missing_share,
    )


def _drift_report(policy: DriftPolicy) -> Any:
    """The Evidently report: drift of the watched columns and of the predictions, and the
    share of missing values."""
    from evidently import Report
    from evidently.metrics import DatasetMissingValueCount, ValueDrift
    from evidently.presets import DataDriftPreset

    return Report(
        [
            DataDriftPreset(
                columns=list(policy.columns),
                drift_share=policy.drift_share,
                threshold=policy.column_threshold,
            ),
            ValueDrift(column=PREDICTION, threshold=policy.prediction_threshold),
            DatasetMissingValueCount(),
        ],
        include_tests=False,
    )


def _drift_values(
    metrics: list[dict[str, Any]],
) -> tuple[dict[str, float], float | None, float]:
    """From a report's metrics: each column's drift score, the predictions' score, and the
    share of missing values."""
    scores: dict[str, float] = {}
    prediction_score = None
    missing_share = 0.0
    for metric in metrics:
        config = metric["config"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "ValueDrift":
            value = float(metric["value"])
            if config["column"] == PREDICTION:
                prediction_score = value
            else:
                scores[config["column"]] = value
        elif kind == "DatasetMissingValueCount":
            missing_share = float(metric["value"]["share"])
    return scores, prediction_score, missing_share


def _valid_labels(
    served: pd.DataFrame, metrics: WindowMetrics, bounds: ValidationBounds
) -> pd.DataFrame:
    """The window's labelled rides that pass validation; ``metrics`` gets the counts of
    labelled, valid and invalid rides, and the share of the window's input that was bad."""
    labelled = trips_frame(served)
    metrics.labelled = len(labelled)
    valid, glitches = labelled.iloc[0:0], 0
    if len(labelled):
        # A window is not a calendar month: no pickup is "outside the month" here.
        any_time = replace(bounds, month_slack_hours=1e9)
        source = f"window {metrics.start}"
        valid, report = clean_trips(labelled, any_time, month=None, source=source)
        metrics.invalid_labels = dict(report.dropped)
        glitches = report.glitch_rows
    metrics.valid_labelled = len(valid)
    refused_rides = metrics.refused.get("/predict", 0)
    refused_labels = metrics.refused.get("/feedback", 0)
    seen = metrics.rows + refused_rides
    metrics.invalid_share = (refused_rides + refused_labels + glitches) / seen if seen else 0.0
    return valid


def quality_report(valid: pd.DataFrame, report_path: Path, seed: int = 0) -> None:
    """Evidently's regression page (error distribution) for a sample of the labelled rides."""
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.metrics import MAE, RMSE, MeanError

    frame = _sample(valid[[TARGET, PREDICTION]], QUALITY_REPORT_ROWS, seed)
    definition = DataDefinition(
        numerical_columns=[TARGET, PREDICTION],
        regression=[Regression(target=TARGET, prediction=PREDICTION)],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([RMSE(), MAE(), MeanError()], include_tests=False).run(
            current_data=Dataset.from_pandas(frame, data_definition=definition),
            reference_data=None,
        )
    report_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(report_path))


def _errors(valid: pd.DataFrame) -> tuple[float, float]:
    found = regression_metrics(valid[TARGET].to_numpy(), valid[PREDICTION].to_numpy())
    return found["rmse"], found["mae"]


def monitor_window(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    start: str,
    end: str,
    refused: dict[str, int],
    drift: DriftPolicy,
    min_labels: int,
    bounds: ValidationBounds,
    report_dir: Path | None = None,
    seed: int = 0,
) -> WindowMetrics:
    """Measure one window. ``window`` is the prediction log's rows for it (see
    :meth:`PredictionLog.window`); ``reference`` the champion's training sample."""
    served = window[window["shadow"] == 0]
    metrics = WindowMetrics(start=start, end=end, rows=len(served), refused=dict(refused))
    valid = _valid_labels(served, metrics, bounds)
    if metrics.rows:
        drift_path = report_dir / "drift.html" if report_dir else None
        found = drift_report(
            _features(served, "event_time"),
            _features(reference, PICKUP),
            drift,
            drift_path,
            seed,
        )
        for key in fields(found):
            setattr(metrics, key.name, getattr(found, key.name))
        if drift_path is not None:
            metrics.reports["drift"] = str(drift_path)

    if len(valid) >= min_labels:
        metrics.rmse, metrics.mae = _errors(valid)
        for version, part in valid.groupby("model_version", sort=True):
            rmse, mae = _errors(part)
            metrics.per_version[str(version)] = {"rows": len(part), "rmse": rmse, "mae": mae}
        if report_dir is not None:
            quality_report(valid, report_dir / "quality.html", seed)
            metrics.reports["quality"] = str(report_dir / "quality.html")
    logger.info(
        "window %s..%s: %d rows, %d valid labels, RMSE %s, drift share %.2f",
        start,
        end,
        metrics.rows,
        metrics.valid_labelled,
        metrics.rmse,
        metrics.drift_share,
    )
    return metrics
