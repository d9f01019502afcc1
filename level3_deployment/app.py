"""The level-3 serving app: blue/green models from the registry, an A/B (or shadow) split,
a durable prediction log, label feedback, and an admin API. Always served by gunicorn.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Flask, Response, g, jsonify, request

from level3_deployment import state as st
from level3_deployment.abstats import ab_report
from level3_deployment.openapi import OPENAPI
from level3_deployment.prediction_log import PredictionLog, PredictionRecord, Rejection
from level3_deployment.routing import Mode, Variant, assign
from level3_deployment.slots import SlotManager
from shared.data.schema import PICKUP
from shared.data.validate import ValidationBounds
from shared.errors import TaxiMlopsError
from shared.metrics import ServiceMetrics
from shared.serving import FieldError, RequestValidationError
from shared.web import install_json_errors, install_request_metrics, request_rides

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_FEEDBACK_BATCH = 5000
#: a label above a day is a meter left running, not a trip
MAX_DURATION_MIN = 24 * 60.0
KEY_HEADER = "X-Request-Key"
#: An idempotency key: a client (or load balancer) that retries a request sends the same id,
#: and its predictions are logged once.
REQUEST_ID_HEADER = "X-Request-Id"


@dataclass
class AliasHooks:
    """What promote/rollback do to the registry (moves recorded in the level-2 history)."""

    promote: Callable[[int, str], None]
    restore: Callable[[int, str], None]
    deployed: Callable[[int, str], None] = lambda version, reason: None
    split: Callable[[str], None] = lambda reason: None


def _iso_or_none(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(np.datetime64(value.removesuffix("Z"), "s"))
    except ValueError:
        return None


def _query_number(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise RequestValidationError([FieldError(name, f"expected a number in {low:g}..{high:g}")])
    return value


def _number(body: dict, name: str, low: float, high: float, default: float | None = None) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestValidationError([FieldError(name, f"expected a number in {low:g}..{high:g}")])
    return float(value)


def create_app(
    slots: SlotManager,
    log: PredictionLog,
    store: st.StateStore,
    *,
    token: str,
    aliases: AliasHooks,
    bounds: ValidationBounds | None = None,
    max_rides: int = 1000,
    pinned_as: Variant | None = None,
) -> Flask:
    """``pinned_as``: this service serves one version under that variant's name and refuses
    deployment changes, because something in front of it (an ALB's weighted target groups)
    splits the traffic between a blue and a green service."""
    bounds = bounds or ValidationBounds()
    metrics = ServiceMetrics("taxi_level3", extra_labels=("variant",))
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    install_request_metrics(app, metrics, lambda: {"variant": g.variant})
    install_json_errors(app, MAX_BODY_BYTES)

    @app.before_request
    def _begin() -> None:
        g.variant = "none"
        slots.ensure_polling()

    @app.errorhandler(TaxiMlopsError)
    def _refused(exc: TaxiMlopsError) -> tuple[Response, int]:
        status = 409 if isinstance(exc, st.ConflictError) else 422
        return jsonify({"error": str(exc)}), status

    def admin() -> None:
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise RequestValidationError(
                [FieldError("Authorization", "a valid bearer token is required")], 401
            )

    def body() -> dict[str, Any]:
        payload = request.get_json(force=True, silent=True)
        if payload is None and request.content_length:
            raise RequestValidationError([FieldError("body", "the body is not valid JSON")])
        if payload is not None and not isinstance(payload, dict):
            raise RequestValidationError([FieldError("body", "expected a JSON object")])
        return payload or {}

    def record_refused_rides(exc: RequestValidationError) -> None:
        """Count refused rides in the log (by ride, with their pickup time when readable), so
        monitoring sees bad input that never became a prediction."""
        payload = request.get_json(force=True, silent=True)
        items = payload if isinstance(payload, list) else [payload]
        rejections = []
        for error in exc.errors:
            index = 0
            if error.field.startswith("["):
                index = int(error.field[1 : error.field.index("]")])
            ride = items[index] if index < len(items) else None
            key = event_time = None
            if isinstance(ride, dict):
                key = ride.get("ride_id")
                key = str(key) if isinstance(key, (str, int)) else request.headers.get(KEY_HEADER)
                event_time = _iso_or_none(ride.get(PICKUP))
            rejections.append(Rejection("/predict", error.field, error.message, key, event_time))
        log.record_rejections(rejections)

    @app.post("/predict")
    def predict() -> Response:
        try:
            rides = request_rides(bounds, max_rides)
        except RequestValidationError as exc:
            record_refused_rides(exc)
            raise
        active = slots.active
        state = active.state
        blue, green = active.model(state.blue), active.model(state.green)
        if blue is None:
            return jsonify({"error": "no model is loaded yet; retry shortly"}), 503
        policy = state.policy if green is not None else st.SplitPolicy()
        header_key = request.headers.get(KEY_HEADER)
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is not None and not 0 < len(request_id) <= 128:
            raise RequestValidationError([FieldError(REQUEST_ID_HEADER, "1 to 128 characters")])
        n = len(rides)
        answers, shadows, keys = [], np.zeros(n, dtype=bool), []
        for i, ride_id in enumerate(rides.ride_ids):
            key = str(ride_id) if ride_id is not None else header_key
            a = assign(policy, key)
            answers.append(a.answer)
            shadows[i] = a.shadow
            keys.append(key)
        to_green = np.array([a is Variant.GREEN for a in answers])
        if pinned_as is not None:  # no green slot here: the one model answers, under its name
            answers = [pinned_as] * n
        durations = np.empty(n)
        started = time.perf_counter()
        records: list[PredictionRecord] = []

        def score(model: Any, mask: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict({k: v[mask] for k, v in rides.columns.items()}))

        groups = [(pinned_as or Variant.BLUE, blue, state.blue, ~to_green, False)]
        if to_green.any():
            groups.append((Variant.GREEN, green, state.green, to_green, False))
        if shadows.any():
            groups.append((Variant.GREEN, green, state.green, shadows, True))
        for variant, model, version, mask, shadow in groups:
            if not mask.any():
                continue
            values = score(model, mask)
            if not shadow:
                durations[mask] = values
            latency = (time.perf_counter() - started) * 1000
            for i, value in zip(np.flatnonzero(mask), values, strict=True):
                features = {
                    k: (str(v[i]) if k == PICKUP else float(v[i])) for k, v in rides.columns.items()
                }
                ids = {}
                if request_id is not None:  # a retry of this request maps to the same rows
                    ids["prediction_id"] = f"{request_id}:{i}:{'shadow' if shadow else 'answer'}"
                records.append(
                    PredictionRecord(
                        keys[i],
                        str(variant),
                        str(version),
                        features,
                        float(value),
                        latency,
                        shadow=shadow,
                        **ids,
                    )
                )
                metrics.predictions.labels(variant=str(variant)).inc()
        log.append(records)
        g.variant = "mixed" if 0 < to_green.sum() < n else str(answers[0])
        items = []
        for i in range(n):
            variant = answers[i]
            item: dict[str, Any] = {
                "duration": round(float(durations[i]), 4),
                "variant": str(variant),
                "model_version": str(
                    state.green if variant is Variant.GREEN and pinned_as is None else state.blue
                ),
            }
            if rides.ride_ids[i] is not None:
                item["ride_id"] = rides.ride_ids[i]
            items.append(item)
        return jsonify(items[0] if rides.single else {"predictions": items})

    @app.post("/feedback")
    def feedback() -> tuple[Response, int]:
        data = body()
        if "feedback" in data:
            return feedback_batch(data["feedback"])
        ride_id = data.get("ride_id")
        if isinstance(ride_id, bool) or not isinstance(ride_id, (str, int)):
            raise RequestValidationError([FieldError("ride_id", "expected a string or integer")])
        try:
            actual = _number(data, "duration", 0.0, MAX_DURATION_MIN)
        except RequestValidationError as exc:
            refuse_labels([(str(ride_id), exc.errors[0])])
            raise
        labelled = log.record_feedback(str(ride_id), actual)
        if labelled == 0:
            return jsonify({"error": f"no prediction was logged for ride_id {ride_id!r}"}), 404
        return jsonify({"ride_id": ride_id, "labelled_predictions": labelled}), 200

    def refuse_labels(refused: list[tuple[str | None, FieldError]]) -> None:
        log.record_rejections(
            Rejection(
                "/feedback",
                error.field,
                error.message,
                key,
                log.event_time_of(key) if key is not None else None,
            )
            for key, error in refused
        )

    def feedback_batch(items: Any) -> tuple[Response, int]:
        """Many labels at once: valid ones are stored, each invalid one is named by index and
        field (labels are independent facts: one bad label must not lose the others)."""
        if not isinstance(items, list) or not 0 < len(items) <= MAX_FEEDBACK_BATCH:
            raise RequestValidationError(
                [FieldError("feedback", f"expected a list of 1..{MAX_FEEDBACK_BATCH} labels")]
            )
        good: list[tuple[str, float]] = []
        indexes: list[int] = []
        refused: list[tuple[str | None, FieldError]] = []
        for i, item in enumerate(items):
            ride_id = item.get("ride_id") if isinstance(item, dict) else None
            if isinstance(ride_id, bool) or not isinstance(ride_id, (str, int)):
                refused.append(
                    (None, FieldError(f"feedback[{i}].ride_id", "expected a string or integer"))
                )
                continue
            value = item.get("duration")
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= MAX_DURATION_MIN
            ):
                refused.append(
                    (
                        str(ride_id),
                        FieldError(
                            f"feedback[{i}].duration",
                            f"expected minutes in 0..{MAX_DURATION_MIN:g}, got {value!r}",
                        ),
                    )
                )
                continue
            good.append((str(ride_id), float(value)))
            indexes.append(i)
        counts = log.record_feedback_batch(good) if good else []
        refused += [
            (key, FieldError(f"feedback[{i}].ride_id", f"no prediction was logged for {key!r}"))
            for (key, _), i, n in zip(good, indexes, counts, strict=True)
            if n == 0
        ]
        refuse_labels(refused)
        accepted = sum(1 for n in counts if n)
        return jsonify(
            {
                "accepted": accepted,
                "rejected": [{"field": e.field, "message": e.message} for _, e in refused],
            }
        ), (200 if accepted or not refused else 422)

    @app.get("/health")
    def health() -> tuple[Response, int]:
        active = slots.active
        state = active.state
        ok = active.model(state.blue) is not None
        return jsonify(
            {
                "status": "ok" if ok else "starting",
                "generation": state.generation,
                "blue": state.blue,
                "green": state.green if active.model(state.green) is not None else None,
                "mode": str(state.policy.mode),
                "green_percent": state.green_percent,
                "errors": {str(v): e for v, e in active.errors.items()},
                "pinned_as": None if pinned_as is None else str(pinned_as),
            }
        ), (200 if ok else 503)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(OPENAPI)

    # ----------------------------------------------------------------------- admin API

    def refuse_if_pinned() -> None:
        if pinned_as is not None:
            raise st.ConflictError(
                f"this service is pinned to v{store.current().blue} as {pinned_as}: the load "
                "balancer splits the traffic, so change the deployment there (Terraform: "
                "blue_version, green_version, green_weight)"
            )

    def change(step: Callable[[st.DeploymentState], st.DeploymentState]) -> Response:
        refuse_if_pinned()
        current = store.current()
        new = store.write(step(current), current.generation)
        slots.refresh()
        return jsonify(new.to_dict())

    def actor() -> str:
        return f"admin API ({request.remote_addr})"

    @app.get("/admin/state")
    def admin_state() -> Response:
        admin()
        return jsonify(
            {
                "state": store.current().to_dict(),
                "history": [s.to_dict() for s in store.history()[-20:]],
            }
        )

    @app.post("/admin/deploy")
    def admin_deploy() -> Response:
        admin()
        refuse_if_pinned()
        data = body()
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RequestValidationError([FieldError("version", "expected a model version >= 1")])
        percent = _number(data, "percent", 0.0, 100.0, default=10.0)
        mode = Mode(data.get("mode", "ab")) if data.get("mode", "ab") in ("ab", "shadow") else None
        if mode is None:
            raise RequestValidationError([FieldError("mode", "expected 'ab' or 'shadow'")])
        try:
            slots.prepare(version)  # load, warm up and health-check before any traffic
        except Exception as exc:
            return jsonify(
                {"error": f"v{version} cannot be deployed: {type(exc).__name__}: {exc}"}
            ), 422
        reason = data.get("reason") or f"deploy v{version} to green at {percent:g}% ({mode})"
        response = change(lambda s: st.deploy(s, version, percent, mode, reason, actor()))
        aliases.deployed(version, reason)
        return response

    @app.post("/admin/split")
    def admin_split() -> Response:
        admin()
        data = body()
        percent = _number(data, "percent", 0.0, 100.0)
        mode = (
            Mode(data.get("mode", "ab"))
            if data.get("mode", "ab") in ("ab", "shadow", "off")
            else None
        )
        if mode is None:
            raise RequestValidationError([FieldError("mode", "expected 'ab', 'shadow' or 'off'")])
        reason = data.get("reason") or f"green share {percent:g}% ({mode})"
        response = change(lambda s: st.set_split(s, percent, mode, reason, actor()))
        aliases.split(reason)
        return response

    @app.post("/admin/promote")
    def admin_promote() -> Response:
        admin()
        reason = body().get("reason") or "promoted from green"
        response = change(lambda s: st.promote(s, reason, actor()))
        aliases.promote(store.current().blue, reason)  # type: ignore[arg-type]
        return response

    @app.post("/admin/rollback")
    def admin_rollback() -> Response:
        admin()
        given = body().get("reason")
        reason = given or "rollback"
        before = store.current()
        response = change(lambda s: st.rollback(s, reason, actor()))
        if before.previous_blue is not None:
            # the registry's history says why the champion moved back
            aliases.restore(before.previous_blue, f"rollback: {given}" if given else reason)
        return response

    @app.get("/admin/ab-report")
    def admin_ab_report() -> Response:
        admin()
        min_samples = _query_number("min_samples", 200, 1, 10**9)
        confidence = _query_number("confidence", 0.95, 0.5, 0.999)
        state = store.current()
        since = store.pairing_since()
        versions = {"blue": str(state.blue)}
        if state.green is not None:
            versions["green"] = str(state.green)
        # Labels outside the modelled range (the training target's) are not evidence about
        # either model: a three-hour trip would swamp every squared error.
        label_range = (bounds.min_duration_min, bounds.max_duration_min)
        errors = log.labelled_errors(since=since, versions=versions, actual_range=label_range)
        report = ab_report(errors, min_samples=int(min_samples), confidence=confidence).to_dict()
        return jsonify(
            {
                "blue": state.blue,
                "green": state.green,
                "since": since,
                "label_range": label_range,
                **report,
            }
        )

    return app
