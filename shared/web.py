"""What every Flask service shares: request timing into metrics, and errors as JSON.

Every error is answered as JSON that names the field at fault; nothing answers with a stack
trace. Register these before a service's own handlers.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from shared.data.validate import ValidationBounds
from shared.metrics import ServiceMetrics
from shared.serving import FieldError, RequestValidationError, Rides, parse_rides

logger = logging.getLogger(__name__)

_HTTP_ERROR_FIELD = {404: "path", 405: "method", 408: "body", 413: "body", 415: "body"}
#: what a 401 tells the client to send (RFC 6750)
BEARER_CHALLENGE = 'Bearer realm="taxi-mlops"'


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
        response = jsonify(exc.to_dict())
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
        return response, exc.status

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
        response = jsonify({"error": message, "errors": [{"field": field, "message": message}]})
        for name, value in exc.get_headers():  # Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error; see the service log"}), 500


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(data: bytes) -> Any:
    """A request body as JSON, or a 400 naming what is wrong: not UTF-8, not JSON, NaN or
    Infinity (Python's extensions, not JSON), or nested too deep for the parser."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        message = "the body is nested too deeply"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        message = f"the body is not valid JSON ({str(exc)[:80]})"
    raise RequestValidationError([FieldError("body", message)])


def request_body() -> Any:
    """This request's JSON body (any content type), or None when it is empty. A body over
    MAX_CONTENT_LENGTH, chunked or not, is a 413; one the client stops sending is a 408.
    Read and parsed once per request: a second call (to log what was refused) gets the same
    answer, and does not wait on the client's socket again."""
    if "taxi_body" not in g:
        try:
            g.taxi_body = (_read_body(), None)
        except (RequestValidationError, HTTPException) as exc:
            g.taxi_body = (None, exc)
    payload, error = g.taxi_body
    if error is not None:
        raise error
    return payload


def _read_body() -> Any:
    try:
        data = request.get_data(cache=True)
    except (TimeoutError, ClientDisconnected):
        # the socket's deadline (shared/gunicorn_worker.py) passed before the whole body came
        raise RequestValidationError(
            [FieldError("body", "the body did not arrive in time")], 408
        ) from None
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and len(data) >= limit:
        # a chunked body is cut at the limit, not refused: werkzeug stops reading there
        raise RequestEntityTooLarge()
    if not data:
        return None
    return parse_json(data)


def request_rides(bounds: ValidationBounds, max_rides: int) -> Rides:
    """The rides in this request's JSON body (any content type), validated."""
    payload = request_body()
    if payload is None:
        raise RequestValidationError([FieldError("body", "expected a JSON body with the rides")])
    return parse_rides(payload, bounds, max_rides=max_rides)


def json_object() -> dict[str, Any]:
    """This request's body as a JSON object; an empty body is ``{}``."""
    payload = request_body()
    given = payload is not None or request.get_data(cache=True).strip()  # JSON null is given
    if given and not isinstance(payload, dict):
        raise RequestValidationError([FieldError("body", "expected a JSON object")])
    return payload or {}


def require_bearer(token: str, what: str) -> None:
    """A 401 (with its ``WWW-Authenticate`` challenge) unless the request carries ``token``
    as its bearer token. Compared in constant time."""
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode("utf-8", "replace"), token.encode()):
        raise RequestValidationError(
            [FieldError("Authorization", f"a valid bearer token for {what} is required")], 401
        )
