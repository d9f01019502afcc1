"""The OpenAPI document the level-3 service publishes at /openapi.json."""

from __future__ import annotations

from typing import Any

from level3_deployment.admin import MAX_REASON_CHARS, MAX_VERSION
from level3_deployment.feedback import MAX_DURATION_MIN, MAX_FEEDBACK_BATCH
from shared.openapi import RIDE_ID, RIDES, operation

_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]
_REASON = {"type": ["string", "null"], "maxLength": MAX_REASON_CHARS}
_LABEL = {
    "type": "object",
    "required": ["ride_id", "duration"],
    "not": {"required": ["feedback"]},  # a body with "feedback" is a batch
    "properties": {
        "ride_id": {"oneOf": RIDE_ID["oneOf"][:2]},
        "duration": {"type": "number", "minimum": 0, "maximum": MAX_DURATION_MIN},
    },
}
_LABELS = {
    "type": "object",
    "required": ["feedback"],
    "properties": {
        "feedback": {
            "type": "array",
            "items": _LABEL,
            "minItems": 1,
            "maxItems": MAX_FEEDBACK_BATCH,
        }
    },
}
_CONFLICT = "Someone changed the deployment first, or this service is pinned"


def _query(name: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": text,
        "schema": schema,
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "taxi-mlops level 3 trip-duration service", "version": "2"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/predict": {
            "post": operation(
                "Predict durations (minutes) for one ride or a list",
                {
                    "422": "X-Request-Id was already used for a different request",
                    "503": "No model is loaded yet",
                },
                RIDES,
            )
        },
        "/feedback": {
            "post": operation(
                "Report rides' actual durations (first label wins; feedback token)",
                {
                    "404": "No prediction was logged for this ride",
                    "409": "The ride already has a different label",
                    "422": "Every label in the batch was refused",
                },
                {"oneOf": [_LABEL, _LABELS]},
                security=_ADMIN,
            )
        },
        "/health": {
            "get": operation("Loaded versions, split and load errors", {"503": "Starting"})
        },
        "/metrics": {"get": operation("Prometheus metrics per variant")},
        "/openapi.json": {"get": operation("This document")},
        "/admin/state": {"get": operation("Deployment state and history", security=_ADMIN)},
        "/admin/deploy": {
            "post": operation(
                "Load a version into green and route a share to it",
                {"409": _CONFLICT, "422": "The version cannot be loaded or served"},
                {
                    "type": "object",
                    "required": ["version"],
                    "properties": {
                        "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "mode": {"enum": ["ab", "shadow"]},
                        "reason": _REASON,
                    },
                },
                security=_ADMIN,
            )
        },
        "/admin/split": {
            "post": operation(
                "Change green's share",
                {"409": _CONFLICT, "422": "No green is deployed"},
                {
                    "type": "object",
                    "required": ["percent"],
                    "properties": {
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "mode": {"enum": ["ab", "shadow", "off"]},
                        "reason": _REASON,
                    },
                },
                security=_ADMIN,
            )
        },
        "/admin/promote": {
            "post": operation(
                "Green becomes blue; the champion alias moves",
                {"409": _CONFLICT, "422": "No green is deployed"},
                {"type": "object", "properties": {"reason": _REASON}},
                security=_ADMIN,
                body_required=False,
            )
        },
        "/admin/rollback": {
            "post": operation(
                "Green gets no traffic; a promotion is undone",
                {
                    "409": _CONFLICT,
                    "422": "Nothing to roll back, or the blue it restores cannot be loaded",
                },
                {"type": "object", "properties": {"reason": _REASON}},
                security=_ADMIN,
                body_required=False,
            )
        },
        "/admin/ab-report": {
            "get": {
                **operation(
                    "Per-variant RMSE/MAE with intervals and a verdict",
                    {"400": "A query parameter is out of range"},
                    security=_ADMIN,
                ),
                "parameters": [
                    _query(
                        "min_samples",
                        "Labelled predictions per variant before a verdict",
                        {"type": "integer", "minimum": 1, "maximum": 10**9},
                    ),
                    _query(
                        "confidence",
                        "Confidence of the test",
                        {"type": "number", "minimum": 0.5, "maximum": 0.999},
                    ),
                    _query(
                        "test",
                        "welch (fixed horizon, valid at one look) or sequential (a confidence "
                        "sequence, valid at every look; paired in shadow mode)",
                        {"type": "string", "enum": ["welch", "sequential"]},
                    ),
                    _query(
                        "margin",
                        "sequential: promote when green's MSE is within this share of blue's",
                        {"type": "number", "minimum": 0, "maximum": 0.99},
                    ),
                    _query(
                        "tuned_for",
                        "sequential: the labels the sequence is tightest at",
                        {"type": "integer", "minimum": 100, "maximum": 10**9},
                    ),
                ],
            }
        },
    },
}
