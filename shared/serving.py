"""What every prediction service shares: parsing ride requests and predicting with a Pipeline.

Parsing is hand-written rather than a schema library because it sits on the hot path of every
request and must name the exact field at fault (``[3].trip_distance``) for lists of rides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from shared.data.schema import DISTANCE, DO, PICKUP, PU
from shared.data.validate import ValidationBounds

MAX_RIDE_ID_LENGTH = 128
_MAX_REPORTED_ERRORS = 20


@dataclass
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestValidationError(Exception):
    """The request body is not a valid ride or list of rides. Maps to HTTP 400 (or 413)."""

    def __init__(self, errors: list[FieldError], status: int = 400) -> None:
        self.errors = errors
        self.status = status
        first = errors[0]
        super().__init__(f"{first.field}: {first.message}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "errors": [e.to_dict() for e in self.errors]}


@dataclass
class Rides:
    """Parsed rides as feature columns (numpy arrays) plus what to echo back."""

    columns: dict[str, np.ndarray]
    ride_ids: list[str | int | None]
    single: bool

    def __len__(self) -> int:
        return len(self.ride_ids)


def _zone(value: Any, path: str, bounds: ValidationBounds, errors: list[FieldError]) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "missing" if value is None else f"a {type(value).__name__}"
        errors.append(FieldError(path, f"expected an integer zone ID, got {kind}"))
        return 0
    if isinstance(value, float) and not value.is_integer():
        errors.append(FieldError(path, f"expected an integer zone ID, got {value}"))
        return 0
    if not bounds.min_zone <= value <= bounds.max_zone:
        errors.append(
            FieldError(path, f"zone {value:g} is outside {bounds.min_zone}..{bounds.max_zone}")
        )
        return 0
    return int(value)


def _distance(value: Any, path: str, bounds: ValidationBounds, errors: list[FieldError]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "missing" if value is None else f"a {type(value).__name__}"
        errors.append(FieldError(path, f"expected a number of miles, got {kind}"))
        return 0.0
    if not math.isfinite(value) or value < 0 or value > bounds.max_distance_miles:
        errors.append(
            FieldError(path, f"{value} is outside 0..{bounds.max_distance_miles:g} miles")
        )
        return 0.0
    return float(value)


def _ride_id(value: Any, path: str, errors: list[FieldError]) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        errors.append(FieldError(path, "expected a string or an integer"))
        return None
    if isinstance(value, str) and len(value) > MAX_RIDE_ID_LENGTH:
        errors.append(FieldError(path, f"longer than {MAX_RIDE_ID_LENGTH} characters"))
        return None
    return value


def _pickup(value: Any, path: str, now: np.datetime64, errors: list[FieldError]) -> np.datetime64:
    if value is None:
        return now
    if not isinstance(value, str):
        errors.append(FieldError(path, "expected an ISO 8601 date-time string"))
        return now
    try:
        stamp = np.datetime64(value.removesuffix("Z"), "s")
    except ValueError:
        errors.append(FieldError(path, f"{value!r} is not an ISO 8601 date-time"))
        return now
    return stamp


def parse_rides(payload: Any, bounds: ValidationBounds, *, max_rides: int = 1000) -> Rides:
    """Validate one ride (an object) or a list of rides.

    Each ride needs ``PULocationID``, ``DOLocationID`` (integers in the zone range) and
    ``trip_distance`` (miles, 0..max); ``ride_id`` is optional and echoed back;
    ``pickup_datetime`` (ISO 8601, UTC) is optional and defaults to now: models that use the
    pickup hour and weekday read it, others ignore it.
    """
    single = isinstance(payload, Mapping)
    if single:
        items = [payload]
    elif isinstance(payload, list):
        items = payload
        if not items:
            raise RequestValidationError([FieldError("body", "empty list: send at least one ride")])
        if len(items) > max_rides:
            raise RequestValidationError(
                [FieldError("body", f"{len(items)} rides: at most {max_rides} per request")], 413
            )
    else:
        raise RequestValidationError(
            [FieldError("body", "expected a JSON object (one ride) or a list of rides")]
        )

    n = len(items)
    pu = np.empty(n, dtype=np.float64)
    do = np.empty(n, dtype=np.float64)
    dist = np.empty(n, dtype=np.float64)
    now = np.datetime64("now", "s")
    pickup = np.full(n, now, dtype="datetime64[s]")
    ride_ids: list[str | int | None] = []
    errors: list[FieldError] = []
    for i, ride in enumerate(items):
        prefix = "" if single else f"[{i}]."
        if not isinstance(ride, Mapping):
            errors.append(FieldError(f"[{i}]", "expected an object with the ride's fields"))
            ride_ids.append(None)
            continue
        pu[i] = _zone(ride.get(PU), prefix + PU, bounds, errors)
        do[i] = _zone(ride.get(DO), prefix + DO, bounds, errors)
        dist[i] = _distance(ride.get(DISTANCE), prefix + DISTANCE, bounds, errors)
        pickup[i] = _pickup(ride.get(PICKUP), prefix + PICKUP, now, errors)
        ride_ids.append(_ride_id(ride.get("ride_id"), prefix + "ride_id", errors))
        if len(errors) >= _MAX_REPORTED_ERRORS:
            break
    if errors:
        raise RequestValidationError(errors)
    return Rides({PU: pu, DO: do, DISTANCE: dist, PICKUP: pickup}, ride_ids, single)


def predict_durations(pipeline: Pipeline, rides: Rides) -> np.ndarray:
    """Predicted durations in minutes; the Pipeline does all featurization."""
    return np.asarray(pipeline.predict(rides.columns), dtype=np.float64)


def format_predictions(
    rides: Rides, durations: np.ndarray, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The response body: the course's ``{"duration": ...}`` for one ride, a list for many."""

    def one(i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"duration": round(float(durations[i]), 4)}
        if rides.ride_ids[i] is not None:
            item["ride_id"] = rides.ride_ids[i]
        return item

    if rides.single:
        return {**one(0), **extra}
    return {"predictions": [one(i) for i in range(len(rides))], **extra}
