"""A replay's traffic: its rides through a live level-3 service's /predict, and their labels
through /feedback, as a client of a validating API sends them (refused items dropped by the
index the refusal names, the rest resent)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.errors import ConfigError
from shared.services import http_json

PREDICT_BATCH = 500
FEEDBACK_BATCH = 2000


def _named_items(answer: Any, prefix: str) -> set[int]:
    """The list indexes a refusal names (``[3].trip_distance``, ``feedback[3].duration``)."""
    errors = answer.get("errors", []) if isinstance(answer, dict) else []
    return {
        int(e["field"][len(prefix) : e["field"].index("]")])
        for e in errors
        if e["field"].startswith(prefix)
    }


def post_dropping_refused(
    url: str,
    batch: list[Any],
    body: Any,
    prefix: str,
    headers: dict[str, str] | None = None,
) -> tuple[Any, list[Any], int]:
    """POST ``body(batch)`` until it is accepted. A refusal (400) names its bad items by index
    (``[3].trip_distance``, ``feedback[3].duration``, after ``prefix``): those are dropped and
    the rest resent, as a client of a validating API does. Returns the answer, the batch it
    answers, and how many items were dropped (an empty batch is never sent)."""
    dropped = 0
    answer: Any = None
    while batch:
        status, answer = http_json("POST", url, body(batch), headers=headers, timeout=60)
        if status == 200:
            return answer, batch, dropped
        bad = _named_items(answer, prefix)
        if status != 400 or not bad:
            raise ConfigError(f"{url}: HTTP {status}: {answer}")
        dropped += len(bad)
        batch = [item for k, item in enumerate(batch) if k not in bad]
    return answer, batch, dropped


def stream(url: str, rides: list[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray, int]:
    """Predict every ride in batches. A refused batch names its bad rides (``[i].field``): those
    are dropped and the rest resent, as a client of a validating API does. Returns
    (predictions, version per ride, refused count)."""
    predicted = np.full(len(rides), np.nan)
    versions = np.zeros(len(rides), dtype=np.int64)
    refused = 0
    indexed = [(i, r) for i, r in enumerate(rides) if r is not None]
    for offset in range(0, len(indexed), PREDICT_BATCH):
        answer, batch, dropped = post_dropping_refused(
            f"{url}/predict",
            indexed[offset : offset + PREDICT_BATCH],
            lambda kept: [r for _, r in kept],
            "[",
        )
        refused += dropped
        for (i, _), item in zip(batch, answer["predictions"] if batch else [], strict=True):
            predicted[i] = item["duration"]
            versions[i] = int(item["model_version"])
    return predicted, versions, refused


def send_feedback(
    url: str,
    rides: list[dict[str, Any] | None],
    predicted: np.ndarray,
    actual: np.ndarray,
    token: str,
) -> dict[str, int]:
    """Post the rides' actual durations (``token``: the service's feedback token)."""
    items = [
        {"ride_id": ride["ride_id"], "duration": float(actual[i])}
        for i, ride in enumerate(rides)
        if ride is not None and not np.isnan(predicted[i]) and not np.isnan(actual[i])
    ]
    accepted = refused = 0
    for offset in range(0, len(items), FEEDBACK_BATCH):
        # a malformed label refuses its whole batch, named by index: dropped, the rest resent
        answer, batch, dropped = post_dropping_refused(
            f"{url}/feedback",
            items[offset : offset + FEEDBACK_BATCH],
            lambda kept: {"feedback": kept},
            "feedback[",
            headers={"Authorization": f"Bearer {token}"},
        )
        refused += dropped
        if batch:
            accepted += answer["accepted"]
            refused += len(answer["rejected"])
    return {"accepted": accepted, "refused": refused}
