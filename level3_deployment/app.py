"""The level-3 serving app: blue/green models from the registry, an A/B (or shadow) split,
a durable prediction log, label feedback, and an admin API. Always served by gunicorn.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from level3_deployment import state as st
from level3_deployment.admin import Admin, AliasHooks, admin_blueprint
from level3_deployment.feedback import install_feedback
from level3_deployment.openapi import OPENAPI
from level3_deployment.prediction_log import (
    IdempotencyConflict,
    PredictionLog,
    Rejection,
)
from level3_deployment.routing import Variant
from level3_deployment.scoring import serve_batch
from level3_deployment.slots import SlotManager
from shared.data.schema import PICKUP
from shared.data.validate import ValidationBounds, parse_pickup
from shared.errors import TaxiMlopsError
from shared.gunicorn_runner import worker_pids
from shared.metrics import ServiceMetrics
from shared.openapi import MAX_RIDES
from shared.serving import FieldError, RequestValidationError, ride_key
from shared.statedb.database import StateUnavailable
from shared.web import (
    install_json_errors,
    install_request_metrics,
    json_app,
    request_body,
    request_bytes,
    request_rides,
)

__all__ = ["AliasHooks", "create_app"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
KEY_HEADER = "X-Request-Key"
#: An idempotency key: a client (or load balancer) that retries a request sends the same id,
#: and its predictions are logged once. The same id with another body is refused (422), as the
#: IETF Idempotency-Key draft says, rather than answered and not logged.
REQUEST_ID_HEADER = "X-Request-Id"
MAX_HEADER_KEY_CHARS = 128
#: where WSGI puts those two headers (PEP 3333), worked out once rather than on every request
_ENVIRON_KEYS = {h: "HTTP_" + h.upper().replace("-", "_") for h in (KEY_HEADER, REQUEST_ID_HEADER)}
#: where /predict leaves the variant that answered, for the request metrics' label
VARIANT_KEY = "taxi_mlops.variant"


def _variant_label(environ: dict[str, Any]) -> dict[str, str]:
    return {"variant": environ.get(VARIANT_KEY, "none")}


def _event_time(value: Any, bounds: ValidationBounds) -> str | None:
    """A refused ride's pickup time for the log, when it is a valid one."""
    if not isinstance(value, str):
        return None
    try:
        return str(parse_pickup(value, bounds))
    except ValueError:
        return None


def _header(environ: dict[str, Any], name: str) -> str | None:
    """A request header, read from the WSGI environ (werkzeug's header view costs twice as
    much, twice a request)."""
    value = environ.get(_ENVIRON_KEYS[name])
    if value is not None and not 0 < len(value) <= MAX_HEADER_KEY_CHARS:
        raise RequestValidationError([FieldError(name, f"1 to {MAX_HEADER_KEY_CHARS} characters")])
    return value


def _request_digest(header_key: str | None) -> str:
    """What makes a retry the same request: its body and its routing key (the header the
    route has read already)."""
    digest = hashlib.sha256(request_bytes())
    digest.update(b"\0" + (header_key or "").encode("utf-8", "replace"))
    return digest.hexdigest()


def _refused_rides(exc: RequestValidationError, bounds: ValidationBounds) -> list[Rejection]:
    """The log's record of refused rides (by ride, with their pickup time when readable), so
    monitoring sees bad input that never became a prediction."""
    try:
        payload = request_body()
    except (RequestValidationError, HTTPException):
        payload = None
    items = payload if isinstance(payload, list) else [payload]
    rejections = []
    for error in exc.errors:
        i = error.index
        ride = items[i] if i is not None and i < len(items) else None
        key = event_time = None
        if isinstance(ride, dict):
            key = ride_key(ride.get("ride_id")) or ride_key(request.headers.get(KEY_HEADER))
            event_time = _event_time(ride.get(PICKUP), bounds)
        rejections.append(Rejection("/predict", error.field, error.message, key, event_time))
    return rejections


def _health(
    slots: SlotManager, pinned_as: Variant | None, workers: int, server_pid: int | None
) -> dict[str, Any]:
    active = slots.active
    state = active.state
    ok = active.model(state.blue) is not None
    standby, ready = slots.standby()
    host = socket.gethostname()
    return {
        "status": "ok" if ok else "starting",
        "generation": state.generation,
        "blue": state.blue,
        "green": state.green if active.model(state.green) is not None else None,
        "mode": str(state.policy.mode),
        "green_percent": state.green_percent,
        "errors": {str(v): e for v, e in active.errors.items()},
        # how each loaded version is scored: compiled (proven equal to its Pipeline) or sklearn
        "predictors": {str(v): m.describe() for v, m in active.models.items()},
        # the blue a rollback restores, and whether this worker holds it (a rollback is a swap)
        "standby": None if standby is None else {"version": standby, "loaded": ready},
        "pinned_as": None if pinned_as is None else str(pinned_as),
        # which worker answered, and how many the service runs: a caller waiting for every
        # worker to apply a change counts them (level3_deployment/client.py)
        "worker": f"{host}:{os.getpid()}",
        "workers": workers,
        **_server(host, server_pid),
    }


def _server(host: str, server_pid: int | None) -> dict[str, Any]:
    """The gunicorn master this worker belongs to, and the workers it runs now: a caller that
    counts workers stops counting one that has died (None: the list cannot be read here)."""
    if server_pid is None:
        return {}
    pids = worker_pids(server_pid)
    siblings = None if pids is None else [f"{host}:{pid}" for pid in pids]
    return {"server": f"{host}:{server_pid}", "siblings": siblings}


@dataclass(frozen=True)
class _Serving:
    """What ``POST /predict`` reads and writes."""

    slots: SlotManager
    log: PredictionLog
    bounds: ValidationBounds
    max_rides: int
    pinned_as: Variant | None
    metrics: ServiceMetrics


def _predict(serving: _Serving) -> Response | tuple[Response, int]:
    """Parse, route, score (and shadow-score), log whole, answer."""
    environ = request.environ
    request_id, header_key = _header(environ, REQUEST_ID_HEADER), _header(environ, KEY_HEADER)
    try:
        rides = request_rides(serving.bounds, serving.max_rides)
    except RequestValidationError as exc:
        serving.log.record_rejections(_refused_rides(exc, serving.bounds))
        raise
    active = serving.slots.active
    state = active.state
    blue, green = active.model(state.blue), active.model(state.green)
    if blue is None:
        return jsonify({"error": "no model is loaded yet; retry shortly"}), 503
    keys = [str(r) if r is not None else header_key for r in rides.ride_ids]
    served = serve_batch(rides, keys, request_id, state, (blue, green), serving.pinned_as)
    counts: dict[str, int] = {}
    for record in served.records:  # a dict, not a Counter: a third of the time for one ride
        counts[record.variant] = counts.get(record.variant, 0) + 1
    for variant, count in counts.items():
        serving.metrics.counted(count, variant=variant)
    try:
        digest = _request_digest(header_key) if request_id is not None else None
        serving.log.append(served.records, digest)
    except IdempotencyConflict:
        raise RequestValidationError(
            [FieldError(REQUEST_ID_HEADER, "already used for a different request")], 422
        ) from None
    environ[VARIANT_KEY] = served.variant
    return jsonify(served.items[0] if rides.single else {"predictions": served.items})


def create_app(
    slots: SlotManager,
    log: PredictionLog,
    store: st.StateStore,
    *,
    token: str,
    feedback_token: str,
    aliases: AliasHooks,
    bounds: ValidationBounds | None = None,
    max_rides: int = MAX_RIDES,
    pinned_as: Variant | None = None,
    workers: int = 1,
    server_pid: int | None = None,
) -> Flask:
    """``pinned_as``: this service serves one version under that variant's name and refuses
    deployment changes, because something in front of it (an ALB's weighted target groups)
    splits the traffic between a blue and a green service. ``workers``: how many processes
    gunicorn runs with this app, and ``server_pid`` its master (``/health`` tells both)."""
    bounds = bounds or ValidationBounds()
    metrics = ServiceMetrics("taxi_level3", extra_labels=("variant",))
    app = json_app(__name__)

    install_request_metrics(app, metrics, _variant_label)
    install_json_errors(app, MAX_BODY_BYTES)

    @app.before_request
    def _begin() -> None:
        slots.ensure_polling()

    @app.errorhandler(TaxiMlopsError)
    def _refused(exc: TaxiMlopsError) -> Response | tuple[Response, int]:
        if isinstance(exc, StateUnavailable):
            # nothing is answered that was not logged: the client retries (same X-Request-Id)
            response = jsonify({"error": "the prediction log is unavailable; retry shortly"})
            response.status_code, response.headers["Retry-After"] = 503, "1"
            return response
        status = 409 if isinstance(exc, st.ConflictError) else 422
        return jsonify({"error": str(exc)}), status

    serving = _Serving(slots, log, bounds, max_rides, pinned_as, metrics)

    @app.post("/predict")
    def predict() -> Response | tuple[Response, int]:
        return _predict(serving)

    @app.get("/health")
    def health() -> tuple[Response, int]:
        body = _health(slots, pinned_as, workers, server_pid)
        return jsonify(body), (200 if body["status"] == "ok" else 503)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(OPENAPI)

    install_feedback(app, log, feedback_token)
    admin = Admin(slots, log, store, aliases, bounds, pinned_as)
    app.register_blueprint(admin_blueprint(admin, token))
    return app
