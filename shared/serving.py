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

from shared.compiled import ServingModel
from shared.data.schema import DISTANCE, DO, PICKUP, PU
from shared.data.validate import ValidationBounds, parse_pickup, parse_pickups
from shared.errors import shown
from shared.features import Ride, ride_columns

MAX_RIDE_ID_LENGTH = 128
#: integer ride ids stay within 64 bits: a 400-digit number is not an id
MAX_RIDE_ID_INT = 2**63 - 1
#: the largest integer a float (a JSON number written 12.0) holds exactly
_MAX_EXACT_FLOAT_INT = 2**53
_MAX_REPORTED_ERRORS = 20
#: decimal places of an answered duration (minutes)
ANSWER_DIGITS = 4
#: below this, ``x * 10**digits`` is within 2**-21 of its exact value (53-bit doubles), so a
#: fraction more than 1e-6 from one half cannot have crossed it
_SURE_SCALED = 2.0**32
_FEW_FOR_NUMPY = 32


@dataclass
class FieldError:
    field: str
    message: str
    #: the ride (or label) in a list this error is about; None for the request as a whole
    index: int | None = None

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestValidationError(Exception):
    """The request body is not a valid ride or list of rides. Maps to HTTP 400 (or ``status``)."""

    def __init__(self, errors: list[FieldError], status: int = 400) -> None:
        self.errors = errors
        self.status = status
        first = errors[0]
        super().__init__(f"{first.field}: {first.message}")

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "errors": [e.to_dict() for e in self.errors]}


@dataclass
class Rides:
    """Parsed rides as feature columns (numpy arrays) plus what to echo back. A one-ride
    request (most of them) also keeps the ride's scalars (``one``), which the compiled
    predictors and level 3's log read without arrays; its columns are built only if asked."""

    ride_ids: list[str | int | None]
    single: bool
    arrays: dict[str, np.ndarray] | None = None
    one: Ride | None = None

    def __post_init__(self) -> None:
        if self.arrays is None and self.one is None:
            raise ValueError("Rides needs its columns or its one ride's scalars")

    @property
    def columns(self) -> dict[str, np.ndarray]:
        if self.arrays is None:
            self.arrays = ride_columns(self.one or {})
        return self.arrays

    def __len__(self) -> int:
        return len(self.ride_ids)


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _as_float(value: Any) -> float | None:
    """A JSON number as a float; None for a non-number or one beyond float's range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # a 400-digit integer
        return None
    return number if math.isfinite(number) else None


def _zone(value: Any, path: str, bounds: ValidationBounds, errors: list[FieldError]) -> int:
    number = _as_float(value)
    if number is None or not number.is_integer():
        number_given = isinstance(value, (int, float)) and not isinstance(value, bool)
        got = shown(value) if number_given else _kind(value)
        errors.append(FieldError(path, f"expected an integer zone ID, got {got}"))
        return 0
    if not bounds.min_zone <= number <= bounds.max_zone:
        errors.append(
            FieldError(path, f"zone {shown(value)} is outside {bounds.min_zone}..{bounds.max_zone}")
        )
        return 0
    return int(number)


def _distance(value: Any, path: str, bounds: ValidationBounds, errors: list[FieldError]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(FieldError(path, f"expected a number of miles, got {_kind(value)}"))
        return 0.0
    number = _as_float(value)
    if number is None or number < 0 or number > bounds.max_distance_miles:
        errors.append(
            FieldError(path, f"{shown(value)} is outside 0..{bounds.max_distance_miles:g} miles")
        )
        return 0.0
    return number


def ride_id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a ride id (None when it can): a string of 1..128 characters
    that UTF-8 can encode (no lone surrogates), or an integer within 64 bits. The one rule
    for ids, in predictions and labels alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _MAX_EXACT_FLOAT_INT:
        return None  # 4814.0 is the integer 4814 to JSON Schema, and so here
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string or an integer, got {_kind(value)}"
    if isinstance(value, int):
        return None if abs(value) <= MAX_RIDE_ID_INT else "an integer id must fit in 64 bits"
    if not value:
        return "an empty string is not an id"
    if len(value) > MAX_RIDE_ID_LENGTH:
        return f"longer than {MAX_RIDE_ID_LENGTH} characters (got {len(value)})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode text (a lone surrogate)"
    return None


def canonical_ride_id(value: str | int | float) -> str | int:
    """A valid ride id as it is echoed and logged: integral floats as the integer."""
    return int(value) if isinstance(value, float) else value


def ride_key(value: Any) -> str | None:
    """The log's key for a ride id: its text, or None for a missing or invalid id."""
    if value is None or ride_id_problem(value) is not None:
        return None
    return str(canonical_ride_id(value))


def _ride_id(value: Any, path: str, errors: list[FieldError]) -> str | int | None:
    if value is None:
        return None
    problem = ride_id_problem(value)
    if problem is not None:
        errors.append(FieldError(path, problem))
        return None
    return canonical_ride_id(value)


def _pickup(
    value: Any, path: str, bounds: ValidationBounds, now: np.datetime64, errors: list[FieldError]
) -> np.datetime64:
    if value is None:
        return now
    if not isinstance(value, str):
        errors.append(
            FieldError(path, f"expected an ISO 8601 date-time string, got {_kind(value)}")
        )
        return now
    try:
        return parse_pickup(value, bounds)
    except ValueError as exc:
        errors.append(FieldError(path, str(exc)))
        return now


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
                [FieldError("body", f"{len(items)} rides: at most {max_rides} per request")]
            )
    else:
        raise RequestValidationError(
            [FieldError("body", "expected a JSON object (one ride) or a list of rides")]
        )

    now = np.datetime64("now", "s")
    if single:
        one = _parse_plain_one(payload, bounds, now)
        if one is not None:
            return Rides(one[1], True, one=one[0])
    else:
        plain = _parse_plain(items, bounds, now)
        if plain is not None:
            return Rides(plain[1], False, arrays=plain[0])
    return _parse_each(items, single, bounds, now)


def _parse_each(
    items: list[Any], single: bool, bounds: ValidationBounds, now: np.datetime64
) -> Rides:
    """Ride by ride, naming every field at fault."""
    n = len(items)
    pu = np.empty(n, dtype=np.float64)
    do = np.empty(n, dtype=np.float64)
    dist = np.empty(n, dtype=np.float64)
    pickup = np.full(n, now, dtype="datetime64[s]")
    ride_ids: list[str | int | None] = []
    errors: list[FieldError] = []
    for i, ride in enumerate(items):
        prefix = "" if single else f"[{i}]."
        if not isinstance(ride, Mapping):
            errors.append(FieldError(f"[{i}]", "expected an object with the ride's fields", i))
            ride_ids.append(None)
            continue
        found: list[FieldError] = []
        pu[i] = _zone(ride.get(PU), prefix + PU, bounds, found)
        do[i] = _zone(ride.get(DO), prefix + DO, bounds, found)
        dist[i] = _distance(ride.get(DISTANCE), prefix + DISTANCE, bounds, found)
        pickup[i] = _pickup(ride.get(PICKUP), prefix + PICKUP, bounds, now, found)
        ride_ids.append(_ride_id(ride.get("ride_id"), prefix + "ride_id", found))
        errors += [FieldError(e.field, e.message, i) for e in found]
        if len(errors) >= _MAX_REPORTED_ERRORS:
            break
    if errors:
        raise RequestValidationError(errors)
    return Rides(ride_ids, single, arrays={PU: pu, DO: do, DISTANCE: dist, PICKUP: pickup})


_NUMBERS = frozenset({int, float})


def _parse_plain(
    items: list[Any], bounds: ValidationBounds, now: np.datetime64
) -> tuple[dict[str, np.ndarray], list[str | int | None]] | None:
    """A list of rides at array speed, when every value is plainly valid: JSON objects whose
    zones and distances are in-range numbers, ids all strings (or all integers, or absent)
    and pickup times all valid strings (or all absent). None as soon as anything is not: the
    ride-by-ride path then finds and names it. Accepts exactly what that path accepts without
    an error, with the same values (tests/unit/test_serving_fast_path.py)."""
    if any(type(r) is not dict for r in items):
        return None
    pu, do, dist = ([r.get(k) for r in items] for k in (PU, DO, DISTANCE))
    if not set(map(type, pu)).union(map(type, do), map(type, dist)) <= _NUMBERS:
        return None
    try:
        zones, miles = np.array([pu, do], dtype=np.float64), np.array(dist, dtype=np.float64)
    except OverflowError:  # an integer beyond a float's range
        return None
    if not (np.isfinite(zones).all() and np.isfinite(miles).all()):
        return None
    if not ((zones == np.floor(zones)).all() and _within(zones, bounds.min_zone, bounds.max_zone)):
        return None
    if not _within(miles, 0, bounds.max_distance_miles):
        return None
    ids, pickups = _plain_ids(items), _plain_pickups(items, bounds, now)
    if ids is None or pickups is None:
        return None
    return {PU: zones[0], DO: zones[1], DISTANCE: miles, PICKUP: pickups}, ids


def _parse_plain_one(
    ride: Any, bounds: ValidationBounds, now: np.datetime64
) -> tuple[Ride, list[str | int | None]] | None:
    """One ride in Python scalars, when every value is plainly valid (as
    :func:`_parse_plain` for a list): numpy's per-array costs made the list path twice as
    slow as the ride-by-ride one for a single ride, and that is most requests. None as soon
    as anything is not plain: the ride-by-ride path then names it."""
    if type(ride) is not dict:
        return None
    pu: Any = ride.get(PU)
    do: Any = ride.get(DO)
    miles: Any = ride.get(DISTANCE)
    # spelled out, not a loop over the three: generators cost as much as the checks
    if type(pu) not in _NUMBERS or type(do) not in _NUMBERS or type(miles) not in _NUMBERS:
        return None
    try:
        pu, do, miles = float(pu), float(do), float(miles)
    except OverflowError:  # an integer beyond a float's range
        return None
    low, high = bounds.min_zone, bounds.max_zone
    if not (low <= pu <= high and low <= do <= high and pu.is_integer() and do.is_integer()):
        return None  # NaN fails the comparisons
    if not 0 <= miles <= bounds.max_distance_miles:
        return None
    ride_id, text = ride.get("ride_id"), ride.get(PICKUP)
    if ride_id is not None and ride_id_problem(ride_id) is not None:
        return None
    pickup = now if text is None else _plain_pickup(text, bounds)
    if pickup is None:
        return None
    values = {PU: pu, DO: do, DISTANCE: miles, PICKUP: pickup}
    return values, [None if ride_id is None else canonical_ride_id(ride_id)]


def _plain_pickup(text: Any, bounds: ValidationBounds) -> np.datetime64 | None:
    if type(text) is not str:
        return None
    try:
        return parse_pickup(text, bounds)
    except ValueError:
        return None


def _within(values: np.ndarray, low: float, high: float) -> bool:
    return bool(values.min() >= low and values.max() <= high)


def _plain_ids(items: list[dict[str, Any]]) -> list[str | int | None] | None:
    ids = [r.get("ride_id") for r in items]
    kinds = {type(v) for v in ids} - {type(None)}
    if kinds == {str}:
        texts = [v for v in ids if v is not None]
        lengths = list(map(len, texts))
        if min(lengths) < 1 or max(lengths) > MAX_RIDE_ID_LENGTH:
            return None
        try:
            "".join(texts).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: let the slow path name it
            return None
        return ids
    if kinds == {int}:
        return ids if all(v is None or abs(v) <= MAX_RIDE_ID_INT for v in ids) else None
    return ids if not kinds else None


def _plain_pickups(
    items: list[dict[str, Any]], bounds: ValidationBounds, now: np.datetime64
) -> np.ndarray | None:
    times = [r.get(PICKUP) for r in items]
    if all(t is None for t in times):
        return np.full(len(items), now, dtype="datetime64[s]")
    return parse_pickups(times, bounds)


def predict_durations(model: Pipeline | ServingModel, rides: Rides) -> np.ndarray:
    """Predicted durations in minutes: by a :class:`ServingModel` (the compiled predictor
    proven equal to its Pipeline; one ride from its scalars), or by a Pipeline itself; either
    does all featurization."""
    if rides.one is not None and isinstance(model, ServingModel):
        return np.array([model.one(rides.one)])
    return np.asarray(model.predict(rides.columns), dtype=np.float64)


def format_predictions(
    rides: Rides, durations: np.ndarray, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The response body: the course's ``{"duration": ...}`` for one ride, a list for many."""

    minutes = rounded(durations, ANSWER_DIGITS)
    # a comprehension, not a function a ride: the calls were a fifth of a batch's time
    items = [
        {"duration": m} if i is None else {"duration": m, "ride_id": i}
        for m, i in zip(minutes, rides.ride_ids, strict=True)
    ]
    if rides.single:
        return {**items[0], **extra}
    return {"predictions": items, **extra}


def rounded(values: Any, digits: int) -> list[float]:
    """``[round(v, digits) for v in values]``, to the bit, at numpy's speed (Python's
    ``round`` was an eighth of a 1,000-ride batch). ``rint(v * 10**digits) / 10**digits`` is
    the double nearest to the decimal that ``round`` picks, except where the multiplication's
    own rounding may have moved the value across a half (or it is huge, or not finite): there
    ``round`` itself answers. Checked against ``round`` in tests/unit/test_serving.py."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < _FEW_FOR_NUMPY:  # one ride (most requests): numpy's fixed cost is ~30 rounds
        return [round(v, digits) for v in x.tolist()]
    scale = 10.0**digits
    scaled = x * scale
    result: list[float] = (np.rint(scaled) / scale).tolist()
    with np.errstate(invalid="ignore"):  # inf - inf: not finite, so unsure below
        margin = np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5)
    unsure = ~((margin > 1e-6) & (np.abs(scaled) < _SURE_SCALED))
    for i in np.flatnonzero(unsure).tolist():
        result[i] = round(float(x[i]), digits)
    return result
