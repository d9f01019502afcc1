"""The OpenAPI document the level-3 service publishes at /openapi.json."""

from __future__ import annotations

from typing import Any

_RIDE = {
    "type": "object",
    "required": ["PULocationID", "DOLocationID", "trip_distance"],
    "properties": {
        "PULocationID": {"type": "integer", "minimum": 1, "maximum": 265},
        "DOLocationID": {"type": "integer", "minimum": 1, "maximum": 265},
        "trip_distance": {"type": "number", "minimum": 0, "maximum": 100},
        "pickup_datetime": {"type": "string", "format": "date-time"},
        "ride_id": {"oneOf": [{"type": "string", "maxLength": 128}, {"type": "integer"}]},
    },
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "errors": {"type": "array"}},
}
_JSON_ERROR = {"content": {"application/json": {"schema": _ERROR}}}
_ADMIN = [{"bearer": []}]


def _op(summary: str, body: dict | None = None, secured: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK"},
            "400": {"description": "Bad request", **_JSON_ERROR},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if secured:
        op["security"] = _ADMIN
        op["responses"]["401"] = {"description": "Missing or wrong bearer token", **_JSON_ERROR}
    return op


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "taxi-mlops level 3 trip-duration service", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/predict": {
            "post": _op(
                "Predict durations (minutes) for one ride or a list",
                {"oneOf": [_RIDE, {"type": "array", "items": _RIDE}]},
            )
        },
        "/feedback": {
            "post": _op(
                "Report a ride's actual duration",
                {
                    "type": "object",
                    "required": ["ride_id", "duration"],
                    "properties": {
                        "ride_id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        "duration": {"type": "number", "minimum": 0, "maximum": 1440},
                    },
                },
            )
        },
        "/health": {"get": _op("Loaded versions, split and load errors")},
        "/metrics": {"get": _op("Prometheus metrics per variant")},
        "/admin/state": {"get": _op("Deployment state and history", secured=True)},
        "/admin/deploy": {
            "post": _op(
                "Load a version into green and route a share to it",
                {
                    "type": "object",
                    "required": ["version"],
                    "properties": {
                        "version": {"type": "integer", "minimum": 1},
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "mode": {"enum": ["ab", "shadow"]},
                        "reason": {"type": "string"},
                    },
                },
                secured=True,
            )
        },
        "/admin/split": {
            "post": _op(
                "Change green's share",
                {
                    "type": "object",
                    "required": ["percent"],
                    "properties": {
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "mode": {"enum": ["ab", "shadow", "off"]},
                    },
                },
                secured=True,
            )
        },
        "/admin/promote": {
            "post": _op(
                "Green becomes blue; the champion alias moves", {"type": "object"}, secured=True
            )
        },
        "/admin/rollback": {
            "post": _op(
                "Green gets no traffic; a promotion is undone", {"type": "object"}, secured=True
            )
        },
        "/admin/ab-report": {
            "get": _op("Per-variant RMSE/MAE with intervals and a verdict", secured=True)
        },
    },
}
