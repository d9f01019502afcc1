"""The parts of the services' OpenAPI 3.1 documents that level 1 and level 3 share: the ride, the
error body, and the statuses every operation can answer. Kept beside ``shared/serving.py``,
whose parser they describe (a schemathesis run in the suite checks that they agree)."""

from __future__ import annotations

from typing import Any

from shared.data.validate import PICKUP_PATTERN, ValidationBounds
from shared.serving import MAX_RIDE_ID_INT, MAX_RIDE_ID_LENGTH

_BOUNDS = ValidationBounds()

RIDE_ID: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_RIDE_ID_LENGTH},
        {"type": "integer", "minimum": -MAX_RIDE_ID_INT, "maximum": MAX_RIDE_ID_INT},
        {"type": "null"},
    ],
}
_ZONE = {"type": "integer", "minimum": _BOUNDS.min_zone, "maximum": _BOUNDS.max_zone}
RIDE: dict[str, Any] = {
    "type": "object",
    "required": ["PULocationID", "DOLocationID", "trip_distance"],
    "properties": {
        "PULocationID": _ZONE,
        "DOLocationID": _ZONE,
        "trip_distance": {"type": "number", "minimum": 0, "maximum": _BOUNDS.max_distance_miles},
        "pickup_datetime": {
            "type": ["string", "null"],
            "pattern": PICKUP_PATTERN,
            "description": "UTC date-time (ISO 8601), 2009-2099; default now",
        },
        "ride_id": RIDE_ID,
    },
}
#: the services' default batch limit (``max_rides``)
MAX_RIDES = 1000
RIDES: dict[str, Any] = {
    "oneOf": [RIDE, {"type": "array", "items": RIDE, "minItems": 1, "maxItems": MAX_RIDES}]
}
ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_JSON_ERROR = {"content": {"application/json": {"schema": ERROR}}}
#: what any operation may answer besides its own statuses
COMMON_ERRORS: dict[str, str] = {
    "400": "Bad request: the body or a field is invalid (named in `errors`)",
    "404": "No such endpoint",
    "405": "Method not allowed (see the Allow header)",
    "408": "The body did not arrive in time",
    "413": "Body or batch too large",
}


def responses(codes: dict[str, str]) -> dict[str, Any]:
    """An operation's responses: 200, the common errors, and ``codes`` (status -> text)."""
    out: dict[str, Any] = {"200": {"description": "OK"}}
    for code, text in {**COMMON_ERRORS, **codes}.items():
        out[code] = {"description": text, **_JSON_ERROR}
    return out


def operation(
    summary: str,
    codes: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses(codes or {})}
    if body is not None:
        content = {"application/json": {"schema": body}}
        op["requestBody"] = {"required": body_required, "content": content}
    if security is not None:
        op["security"] = security
        op["responses"]["401"] = {"description": "Missing or wrong bearer token", **_JSON_ERROR}
    return op
