"""Level-1 training: validate both months, fit the course's model, evaluate on the next month.

A pure step (:func:`train_baseline`) plus file wiring (:func:`train_from_files`). Everything it
calls lives in ``shared/``; this module only decides the order.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn
from sklearn.pipeline import Pipeline

from shared.data.digest import file_sha256
from shared.data.load import TripMonth, load_month
from shared.data.validate import ValidationBounds, ValidationReport, validate_month
from shared.evaluate import regression_metrics
from shared.features import BASELINE, FeatureSpec, build_pipeline, split_xy
from shared.model_io import save_model

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    pipeline: Pipeline
    train_report: ValidationReport
    val_report: ValidationReport
    train_metrics: dict[str, float]
    val_metrics: dict[str, float]
    fit_seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "train_rmse": self.train_metrics["rmse"],
            "train_mae": self.train_metrics["mae"],
            "val_rmse": self.val_metrics["rmse"],
            "val_mae": self.val_metrics["mae"],
            "train_rows": self.train_report.rows_out,
            "val_rows": self.val_report.rows_out,
            "train_rows_in": self.train_report.rows_in,
            "val_rows_in": self.val_report.rows_in,
            "train_dropped": self.train_report.dropped,
            "val_dropped": self.val_report.dropped,
            "fit_seconds": round(self.fit_seconds, 3),
        }


def train_baseline(
    train: TripMonth,
    val: TripMonth,
    bounds: ValidationBounds,
    spec: FeatureSpec = BASELINE,
) -> TrainResult:
    """Validate, fit the course's LinearRegression on ``spec`` features, evaluate on ``val``."""
    train_clean, train_report = validate_month(
        train.frame, bounds, month=train.month, source=train.source
    )
    val_clean, val_report = validate_month(val.frame, bounds, month=val.month, source=val.source)
    X_train, y_train = split_xy(train_clean, spec)
    X_val, y_val = split_xy(val_clean, spec)
    pipeline = build_pipeline(spec)
    started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started
    return TrainResult(
        pipeline=pipeline,
        train_report=train_report,
        val_report=val_report,
        train_metrics=regression_metrics(y_train, pipeline.predict(X_train)),
        val_metrics=regression_metrics(y_val, pipeline.predict(X_val)),
        fit_seconds=fit_seconds,
    )


def train_from_files(
    train_source: str, val_source: str, out: Path, bounds: ValidationBounds
) -> dict[str, Any]:
    """Train from two files and save the model with metadata. Returns the JSON summary."""
    columns = list(BASELINE.columns)
    train = load_month(train_source, columns=columns)
    val = load_month(val_source, columns=columns)
    result = train_baseline(train, val, bounds)
    summary = result.summary()
    metadata = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "level": 1,
        "features": list(BASELINE.columns),
        "estimator": type(result.pipeline[-1]).__name__,
        "train_file": {"path": train.source, "sha256": file_sha256(train.source)},
        "val_file": {"path": val.source, "sha256": file_sha256(val.source)},
        "metrics": summary,
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
    }
    save_model(result.pipeline, out, metadata)
    logger.info("saved model to %s (val RMSE %.3f)", out, summary["val_rmse"])
    return {"model_path": str(out), **summary}
