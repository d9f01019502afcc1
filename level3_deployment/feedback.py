"""``POST /feedback``: the actual durations of rides, joined to their logged predictions.

Who may post labels: a client with the feedback token (``TAXI_MLOPS_FEEDBACK_TOKEN``), a
scope of its own, apart from the admin token: the system that knows how long rides took (the
dispatch or billing system) labels them, and it cannot move traffic.

The rule for a ride labelled twice is *first label wins* (``PredictionLog.record_labels``): the
same value again is a retry (200), a different value is refused (409) and the first one kept.
A label for a ride with no logged prediction is refused (404) and not stored. A batch
(``{"feedback": [...]}``) is refused whole if any label in it is malformed.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify

from level3_deployment.labels import Labelled
from level3_deployment.prediction_log import PredictionLog, Rejection
from shared.data.validate import ValidationBounds
from shared.errors import shown
from shared.serving import (
    FieldError,
    RequestValidationError,
    canonical_ride_id,
    ride_id_problem,
    ride_key,
)
from shared.web import json_object, require_bearer

MAX_FEEDBACK_BATCH = 5000
#: how many malformed labels a refused batch names
_MAX_NAMED = 100
#: a label above this is a meter left running, not a trip (the same bound as training data's)
MAX_DURATION_MIN = ValidationBounds().max_plausible_duration_min


def _label(item: Any, prefix: str) -> tuple[str | None, float | None, FieldError | None]:
    """One label's ride key and minutes, or the error that refuses it (with the key when the
    ride id itself was valid, so monitoring can place the refusal in time)."""
    if not isinstance(item, dict):
        return None, None, FieldError(prefix.rstrip(".") or "body", "expected an object")
    ride_id = item.get("ride_id")
    problem = ride_id_problem(ride_id)
    if problem is not None:
        return None, None, FieldError(f"{prefix}ride_id", problem)
    value = item.get("duration")
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not 0.0 <= number <= MAX_DURATION_MIN:
        message = f"expected minutes in 0..{MAX_DURATION_MIN:g}, got {shown(value)}"
        return ride_key(ride_id), None, FieldError(f"{prefix}duration", message)
    return ride_key(ride_id), float(number), None


def _outcome_error(key: str, outcome: Labelled, field: str) -> FieldError | None:
    if outcome.status == "unknown":
        return FieldError(field, f"no prediction was logged for ride_id {shown(key)}")
    if outcome.status == "conflict":
        return FieldError(
            field, f"ride_id {shown(key)} is already labelled {outcome.stored_actual:g} minutes"
        )
    return None


def _record_refusals(log: PredictionLog, refused: list[tuple[str | None, FieldError]]) -> None:
    """Refused labels go to the log, placed in time by their ride's prediction."""
    times = log.event_times_of(key for key, _ in refused if key is not None)
    log.record_rejections(
        Rejection("/feedback", error.field, error.message, key, times.get(key) if key else None)
        for key, error in refused
    )


def install_feedback(app: Flask, log: PredictionLog, token: str) -> None:

    @app.post("/feedback")
    def feedback() -> tuple[Response, int]:
        require_bearer(token, "labels (TAXI_MLOPS_FEEDBACK_TOKEN)")
        data = json_object()
        if "feedback" in data:
            return feedback_batch(data["feedback"])
        key, actual, error = _label(data, "")
        if error is not None or key is None or actual is None:
            _record_refusals(log, [(key, error)] if error is not None and key is not None else [])
            raise RequestValidationError([error or FieldError("body", "expected a label")])
        (outcome,) = log.record_labels([(key, actual)])
        error = _outcome_error(key, outcome, "ride_id")
        if error is not None:
            status = 404 if outcome.status == "unknown" else 409
            return jsonify({"error": error.message, "errors": [error.to_dict()]}), status
        ride_id = canonical_ride_id(data["ride_id"])
        body = {"ride_id": ride_id, "labelled_predictions": outcome.predictions}
        return jsonify({**body, "duplicate": outcome.status == "duplicate"}), 200

    def feedback_batch(items: Any) -> tuple[Response, int]:
        """Many labels at once. The batch is validated whole: one malformed label refuses it
        (400, each bad label named by index and field, nothing stored), so a client cannot
        half-send a batch by mistake. Well-formed labels the log refuses (no prediction, a
        different label already stored) are listed in ``rejected`` of a 200: each is its
        own fact, and the others are kept."""
        if not isinstance(items, list) or not 0 < len(items) <= MAX_FEEDBACK_BATCH:
            raise RequestValidationError(
                [FieldError("feedback", f"expected a list of 1..{MAX_FEEDBACK_BATCH} labels")]
            )
        good: list[tuple[str, float]] = []
        refused: list[tuple[str | None, FieldError]] = []
        for i, item in enumerate(items):
            key, actual, error = _label(item, f"feedback[{i}].")
            if error is not None or key is None or actual is None:
                refused.append((key, error or FieldError(f"feedback[{i}]", "expected a label")))
            else:
                good.append((key, actual))
        if refused:
            _record_refusals(log, refused)  # counted for monitoring, though the batch is refused
            raise RequestValidationError([e for _, e in refused][:_MAX_NAMED])
        outcomes = log.record_labels(good)
        for i, ((key, _), outcome) in enumerate(zip(good, outcomes, strict=True)):
            error = _outcome_error(key, outcome, f"feedback[{i}].ride_id")
            if error is not None:
                refused.append((key, error))
        _record_refusals(log, refused)
        accepted = sum(1 for o in outcomes if o.status in ("stored", "duplicate"))
        rejected = [{"field": e.field, "message": e.message} for _, e in refused]
        return jsonify({"accepted": accepted, "rejected": rejected}), 200
