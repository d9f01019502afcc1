"""The level-1 prediction service: a Flask app, always served by gunicorn.

Every error is answered as JSON with the field at fault; nothing answers with a stack trace.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sklearn.pipeline import Pipeline
from werkzeug.exceptions import HTTPException

from shared.data.digest import file_sha256
from shared.data.validate import ValidationBounds
from shared.metrics import ServiceMetrics
from shared.model_io import load_model
from shared.serving import (
    FieldError,
    RequestValidationError,
    format_predictions,
    parse_rides,
    predict_durations,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_RIDES = 1000
_HTTP_ERROR_FIELD = {404: "path", 405: "method", 413: "body", 415: "body"}


def create_app(
    pipeline: Pipeline,
    model_version: str,
    *,
    bounds: ValidationBounds | None = None,
    model_info: dict[str, Any] | None = None,
    max_rides: int = MAX_RIDES,
) -> Flask:
    bounds = bounds or ValidationBounds()
    metrics = ServiceMetrics("taxi_level1")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    info = {"model_version": model_version, **(model_info or {})}

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe(endpoint, response.status_code, time.perf_counter() - g.started)
        return response

    @app.errorhandler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> tuple[Response, int]:
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        message = exc.description or exc.name
        if code == 413:
            message = f"request body larger than {MAX_BODY_BYTES // 1024} KiB"
        field = _HTTP_ERROR_FIELD.get(code, "request")
        if code == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif code == 404:
            message = f"no endpoint at {request.path}; see GET /"
        return jsonify({"error": message, "errors": [{"field": field, "message": message}]}), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error; see the service log"}), 500

    @app.post("/predict")
    def predict() -> Response:
        payload = request.get_json(force=True, silent=True)
        if payload is None:
            raise RequestValidationError([FieldError("body", "the body is not valid JSON")])
        rides = parse_rides(payload, bounds, max_rides=max_rides)
        durations = predict_durations(pipeline, rides)
        metrics.predictions.inc(len(rides))
        for value in durations:
            metrics.predicted_minutes.observe(float(value))
        return jsonify(format_predictions(rides, durations, {"model_version": model_version}))

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok", **info})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

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
                },
                **info,
            }
        )

    return app


def create_app_from_file(model_path: Path, **kwargs: Any) -> Flask:
    """Load a saved model; its content hash is the version level 1 reports (no registry yet)."""
    pipeline, metadata = load_model(model_path)
    version = file_sha256(model_path)[:12]
    info = {"model_path": str(model_path), "trained": metadata.get("created_at")}
    return create_app(pipeline, version, model_info=info, **kwargs)
