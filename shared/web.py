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

import orjson
from flask import Flask, Response, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from shared.data.validate import ValidationBounds
from shared.metrics import ServiceMetrics
from shared.serving import FieldError, RequestValidationError, Rides, parse_rides

logger = logging.getLogger(__name__)

_HTTP_ERROR_FIELD = {404: "path", 405: "method", 408: "body", 413: "body", 415: "body"}
#: what a 401 tells the client to send (RFC 6750)
BEARER_CHALLENGE = 'Bearer realm="taxi-mlops"'


class FastJSON(DefaultJSONProvider):
    """Flask's JSON with orjson's encoder: a one-ride answer in a tenth of the time, a
    1,000-ride batch in a twentieth. Keys keep their order; a type orjson does not encode
    natively (dates, dataclasses, Decimal, ...) is encoded the way Flask's default does, so
    only the bytes' spelling changes (UTF-8 text rather than ``\\u`` escapes, ``1e16`` rather
    than ``1e+16``), never a value. NaN and infinities become ``null``: JSON has no spelling
    for them."""

    sort_keys = False
    _options = (
        orjson.OPT_NON_STR_KEYS
        | orjson.OPT_SERIALIZE_NUMPY
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
    )

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # options orjson does not have (indent, ...): Flask's own encoder
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        body = self._encode(self._prepare_response_obj(args, kwargs), orjson.OPT_APPEND_NEWLINE)
        return Response(body, mimetype=self.mimetype)  # our apps keep Flask's response class

    def _encode(self, obj: Any, extra: int = 0) -> bytes:
        return orjson.dumps(obj, default=self.default, option=self._options | extra)


def json_app(import_name: str) -> Flask:
    """A Flask app that answers JSON through :class:`FastJSON` (every service, and the
    benchmark's constant-answer ceiling, so that they are compared on the same footing)."""
    app = Flask(import_name)
    app.json = FastJSON(app)
    return app


def install_request_metrics(
    app: Flask,
    metrics: ServiceMetrics,
    labels: Callable[[dict[str, Any]], dict[str, str]] | None = None,
) -> None:
    """Count and time every request by endpoint and status (plus ``labels(environ)``), and
    serve them at ``GET /metrics``. The count is taken around the whole Flask app (WSGI
    middleware), so it sees the status the client gets, and a request costs one timing and
    one observation rather than two Flask hooks (a tenth of a one-ride request)."""
    app.request_class = type("KeptRequest", (_KeepsRequest, app.request_class), {})
    app.wsgi_app = _RequestMetrics(app.wsgi_app, metrics, labels)  # type: ignore[method-assign]

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        content, content_type = metrics.render()
        return Response(content, content_type=content_type)


#: where the request object waits for the middleware (Flask clears ``werkzeug.request`` when
#: it pops the request context, before the middleware sees the environ again)
REQUEST_KEY = "taxi_mlops.request"


class _KeepsRequest:
    """A request class that leaves itself in the WSGI environ under ``REQUEST_KEY``, for the
    metrics middleware to read the rule Flask matched (and to take out again, so the two do
    not keep each other alive)."""

    def __init__(
        self, environ: dict[str, Any], populate_request: bool = True, shallow: bool = False
    ) -> None:
        super().__init__(environ, populate_request, shallow)  # type: ignore[call-arg]
        environ[REQUEST_KEY] = self


class _RequestMetrics:
    """WSGI middleware: the request's endpoint is the rule Flask matched, ``unmatched`` when
    none did."""

    def __init__(
        self,
        app: Callable[..., Any],
        metrics: ServiceMetrics,
        labels: Callable[[dict[str, Any]], dict[str, str]] | None,
    ) -> None:
        self.app, self.metrics, self.labels = app, metrics, labels

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        status = [500]  # what gunicorn answers if the app raises

        def respond(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(line[:3])
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, respond)
        finally:
            seconds = time.perf_counter() - started
            rule = getattr(environ.pop(REQUEST_KEY, None), "url_rule", None)
            endpoint = rule.rule if rule is not None else "unmatched"
            extra = self.labels(environ) if self.labels is not None else {}
            self.metrics.observe(endpoint, status[0], seconds, **extra)


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


#: a body this short cannot be nested 255 levels deep (two brackets a level)
_SHALLOW_BYTES = 2 * 255


def parse_json(data: bytes) -> Any:
    """A request body as JSON, or a 400 naming what is wrong: not UTF-8, not JSON, NaN or
    Infinity (Python's extensions, not JSON), or nested too deep for the parser.

    orjson parses first (a 1,000-ride batch in a third of the time). Whatever it refuses goes
    through the standard library's parser, which decides: it names the fault, or it accepts
    what orjson does not (an integer beyond 64 bits, a lone surrogate), so that the ride's
    own validation names the field. What both parsers accept, they read as the same values."""
    try:
        payload = orjson.loads(data)
        if len(data) > _SHALLOW_BYTES:
            # orjson reads 1,024 levels of nesting, the standard library as many as the
            # interpreter's recursion limit allows (~900): orjson's encoder stops at 254, so a
            # document it cannot write back is left to the standard library to judge
            orjson.dumps(payload)
        return payload
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
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
    return _once(request.environ, "taxi_mlops.body", _parse_body)


def _parse_body(environ: dict[str, Any]) -> Any:
    data = _request_bytes(environ)
    return parse_json(data) if data else None


def request_bytes() -> bytes:
    """This request's body as bytes, read from the client once (every later call, and
    :func:`request_body`, gets the same bytes or the same error)."""
    return _request_bytes(request.environ)


def _request_bytes(environ: dict[str, Any]) -> bytes:
    data: bytes = _once(environ, "taxi_mlops.bytes", _read_bytes)
    return data


def _once(environ: dict[str, Any], name: str, compute: Callable[[dict[str, Any]], Any]) -> Any:
    """``compute(environ)`` for this request, kept in its WSGI environ under ``name``: its
    value, or the client error it raised, which every later call raises again. (In the
    environ, handed down, rather than in ``g``: each context lookup costs a microsecond.)"""
    kept = environ.get(name)
    if kept is None:
        try:
            kept = environ[name] = (compute(environ), None)
        except (RequestValidationError, HTTPException) as exc:
            kept = environ[name] = (None, exc)
    value, error = kept
    if error is not None:
        raise error
    return value


def _read_bytes(environ: dict[str, Any]) -> bytes:
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    try:
        data = _declared_body(environ, limit)
        if data is None:
            data = request.get_data(cache=True)
    except (TimeoutError, ClientDisconnected):
        # the socket's deadline (shared/gunicorn_worker.py) passed before the whole body came
        raise RequestValidationError(
            [FieldError("body", "the body did not arrive in time")], 408
        ) from None
    if limit is not None and len(data) >= limit:
        # a chunked body is cut at the limit, not refused: werkzeug stops reading there
        raise RequestEntityTooLarge()
    return data


def _declared_body(environ: dict[str, Any], limit: int | None) -> bytes | None:
    """The body read straight from the server's input, when the request declares its length
    and the length is within ``limit``: werkzeug's stream wrappers cost 5 % of a one-ride
    request's time in a worker under load. None for anything else (chunked, no length, too
    long): werkzeug then reads it, and enforces the limit as it goes."""
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if length < 0 or (limit is not None and length > limit):
        return None
    data = environ["wsgi.input"].read(length) if length else b""
    if len(data) < length:  # the client closed its side before the whole body came
        raise ClientDisconnected()
    return data


def request_rides(bounds: ValidationBounds, max_rides: int) -> Rides:
    """The rides in this request's JSON body (any content type), validated."""
    payload = request_body()
    if payload is None:
        raise RequestValidationError([FieldError("body", "expected a JSON body with the rides")])
    return parse_rides(payload, bounds, max_rides=max_rides)


def json_object() -> dict[str, Any]:
    """This request's body as a JSON object; an empty body is ``{}``."""
    payload = request_body()
    given = payload is not None or request_bytes().strip()  # JSON null is given
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
