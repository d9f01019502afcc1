"""The level-1 prediction service: a Flask app, always served by gunicorn.

Every error is answered as JSON with the field at fault; nothing answers with a stack trace.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify
from sklearn.pipeline import Pipeline

from shared.compiled import serving_model
from shared.data.digest import file_sha256
from shared.data.validate import ValidationBounds
from shared.metrics import ServiceMetrics
from shared.model_io import load_model
from shared.openapi import MAX_RIDES, RIDES, operation
from shared.serving import (
    format_predictions,
    predict_durations,
)
from shared.web import install_json_errors, install_request_metrics, json_app, request_rides

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "taxi-mlops level 1 trip-duration service", "version": "2"},
    "paths": {
        "/predict": {
            "post": operation("Predict durations (minutes) for one ride or a list", body=RIDES)
        },
        "/health": {"get": operation("Model version and status")},
        "/metrics": {"get": operation("Prometheus metrics")},
        "/openapi.json": {"get": operation("This document")},
        "/": {"get": operation("What this service offers")},
    },
}


def create_app(
    pipeline: Pipeline,
    model_version: str,
    *,
    bounds: ValidationBounds | None = None,
    model_info: dict[str, Any] | None = None,
    max_rides: int = MAX_RIDES,
    compile_model: bool = True,
    native_dir: Path | None = None,
) -> Flask:
    bounds = bounds or ValidationBounds()
    metrics = ServiceMetrics("taxi_level1")
    app = json_app(__name__)
    # the hot path: the compiled predictor when it gives the Pipeline's answers, else the Pipeline
    model = serving_model(pipeline, compile_it=compile_model, native_dir=native_dir)
    info = {"model_version": model_version, **(model_info or {}), "predictor": model.describe()}

    install_request_metrics(app, metrics)
    install_json_errors(app, MAX_BODY_BYTES)

    @app.post("/predict")
    def predict() -> Response:
        rides = request_rides(bounds, max_rides)
        durations = predict_durations(model, rides)
        metrics.scored(durations)
        return jsonify(format_predictions(rides, durations, {"model_version": model_version}))

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok", **info})

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(OPENAPI)

    @app.get("/")
    def index() -> Response:
        return jsonify(
            {
                "service": "taxi-mlops level 1 trip-duration predictor",
                "endpoints": {
                    "POST /predict": "one ride or a list: PULocationID, DOLocationID, "
                    "trip_distance, optional ride_id",
                    "GET /health": "model version and status",
                    "GET /metrics": "Prometheus metrics",
                    "GET /openapi.json": "the OpenAPI document",
                },
                **info,
            }
        )

    return app


def create_app_from_file(model_path: Path, **kwargs: Any) -> Flask:
    """Load a saved model; its content hash is the version level 1 reports (no registry yet)."""
    pipeline, metadata = load_model(model_path)
    version = file_sha256(model_path)[:12]
    # the file's name only: a public /health must not map the server's disk
    info = {"model_file": model_path.name, "trained": metadata.get("created_at")}
    return create_app(pipeline, version, model_info=info, **kwargs)
