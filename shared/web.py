"""What every Flask service shares: request timing into metrics, and errors as JSON.

Every error is answered as JSON that names the field at fault; nothing answers with a stack
trace. Register these before a service's own handlers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from shared.data.validate import ValidationBounds
from shared.metrics import ServiceMetrics
from shared.serving import FieldError, RequestValidationError, Rides, parse_rides

logger = logging.getLogger(__name__)

_HTTP_ERROR_FIELD = {404: "path", 405: "method", 413: "body", 415: "body"}


def install_request_metrics(
    app: Flask, metrics: ServiceMetrics, labels: Callable[[], dict[str, str]] = dict
) -> None:
    """Count and time every request by endpoint and status (plus ``labels()``), and serve
    them at ``GET /metrics``."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe(endpoint, response.status_code, time.perf_counter() - g.started, **labels())
        return response

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        content, content_type = metrics.render()
        return Response(content, content_type=content_type)


def install_json_errors(app: Flask, max_body_bytes: int) -> None:
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.errorhandler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> tuple[Response, int]:
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        message = exc.description or exc.name
        if code == 413:
            message = f"request body larger than {max_body_bytes // 1024} KiB"
        elif code == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif code == 404:
            message = f"no endpoint at {request.path}"
        field = _HTTP_ERROR_FIELD.get(code, "request")
        return jsonify({"error": message, "errors": [{"field": field, "message": message}]}), code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error; see the service log"}), 500


def request_rides(bounds: ValidationBounds, max_rides: int) -> Rides:
    """The rides in this request's JSON body (any content type), validated."""
    payload = request.get_json(force=True, silent=True)
    if payload is None:
        raise RequestValidationError([FieldError("body", "the body is not valid JSON")])
    return parse_rides(payload, bounds, max_rides=max_rides)
