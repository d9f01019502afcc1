"""Serving a batch of rides, with no web framework in sight: route each ride to blue or green
(sticky by its key), score each group with its model (and green in shadow), and build the
answers and the prediction log's records. The level-3 route (app.py) parses the request, calls
:func:`serve_batch` and logs its records before it answers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from level3_deployment import state as st
from level3_deployment.prediction_log import PredictionRecord, new_prediction_id
from level3_deployment.routing import Variant, assign
from shared.compiled import ServingModel
from shared.data.schema import PICKUP
from shared.features import Ride
from shared.serving import ANSWER_DIGITS, Rides, rounded


@dataclass(frozen=True)
class Served:
    """What a batch of rides came to: the answers (in the rides' order), a log record per
    score (shadow scores included), and the variant label of the request (for metrics)."""

    items: list[dict[str, Any]]
    records: list[PredictionRecord]
    variant: str


def serve_batch(
    rides: Rides,
    keys: list[str | None],
    request_id: str | None,
    state: st.DeploymentState,
    models: tuple[ServingModel, ServingModel | None],
    pinned_as: Variant | None = None,
) -> Served:
    """``keys``: each ride's routing key (its ride id, else the request's key); ``request_id``
    makes the records' ids repeatable (a retry maps to the same rows); ``models``: blue's and
    green's (None when there is no green to serve)."""
    if rides.one is not None:
        return _serve_one(rides, rides.one, keys[0], request_id, state, models, pinned_as)
    blue, green = models
    answers, to_green, groups = _route(keys, state, blue, green, pinned_as)
    durations, records = _score_groups(rides, keys, request_id, groups)
    variant = "mixed" if 0 < to_green.sum() < len(rides) else str(answers[0])
    return Served(_answers(rides, answers, durations, state, pinned_as), records, variant)


def _serve_one(
    rides: Rides,
    ride: Ride,
    key: str | None,
    request_id: str | None,
    state: st.DeploymentState,
    models: tuple[ServingModel, ServingModel | None],
    pinned_as: Variant | None,
) -> Served:
    """:func:`serve_batch` of a one-ride request (most of them), from the ride's scalars:
    the same routing, answers and records, without the masks and arrays a batch needs."""
    blue, green = models
    assigned = assign(state.policy if green is not None else st.SplitPolicy(), key)
    to_green = assigned.answer is Variant.GREEN and green is not None
    scorer, version = (green, state.green) if to_green else (blue, state.blue)
    variant = pinned_as or assigned.answer
    started = time.perf_counter()
    value = scorer.one(ride)  # type: ignore[union-attr]  # green is not None when to_green
    latency = (time.perf_counter() - started) * 1000
    features = {k: _logged(k, v) for k, v in ride.items()}
    records = [_record(key, variant, version, features, value, latency, request_id, 0, False)]
    if assigned.shadow and green is not None:
        shadow = green.one(ride)
        latency = (time.perf_counter() - started) * 1000
        records.append(
            _record(key, Variant.GREEN, state.green, features, shadow, latency, request_id, 0, True)
        )
    item = _answer(round(value, ANSWER_DIGITS), variant, version, rides.ride_ids[0])
    return Served([item], records, str(variant))


def _record(
    key: str | None,
    variant: Variant,
    version: int | None,
    features: dict[str, Any],
    value: float,
    latency_ms: float,
    request_id: str | None,
    index: int,
    shadow: bool,
) -> PredictionRecord:
    """The log's record of one score; with a request id, a retry of the request maps to the
    same rows."""
    return PredictionRecord(
        key,
        str(variant),
        str(version),
        features,
        float(value),
        latency_ms,
        shadow=shadow,
        prediction_id=new_prediction_id()
        if request_id is None
        else f"{request_id}:{index}:{'shadow' if shadow else 'answer'}",
    )


def _features(rides: Rides) -> list[dict[str, Any]]:
    """Each ride's logged features (pickup time as ISO text, numbers as floats), built column
    by column: once per batch, shared by a ride's answer and its shadow score."""
    columns = {
        k: (np.datetime_as_string(v, unit="s") if k == PICKUP else np.asarray(v, float)).tolist()
        for k, v in rides.columns.items()
    }
    rows = zip(*columns.values(), strict=True)
    return [dict(zip(columns, values, strict=True)) for values in rows]


def _logged(name: str, value: Any) -> Any:
    if name == PICKUP:
        return str(np.datetime64(value, "s"))
    return float(value)


def _score_groups(
    rides: Rides, keys: list[str | None], request_id: str | None, groups: list[tuple]
) -> tuple[np.ndarray, list[PredictionRecord]]:
    """Each group's model scores its rides: the answers, and a log record per score. A group
    is (variant, model, version, mask of its rides, shadow)."""
    durations = np.empty(len(rides))
    started = time.perf_counter()
    records: list[PredictionRecord] = []
    features = _features(rides)
    for variant, model, version, mask, shadow in groups:
        if not mask.any():
            continue
        # a one-ride request (the common case) is all one group's: no copy of its columns
        columns = rides.columns if mask.all() else {k: v[mask] for k, v in rides.columns.items()}
        values = np.asarray(model.predict(columns))
        if not shadow:
            durations[mask] = values
        latency = (time.perf_counter() - started) * 1000
        for i, value in zip(np.flatnonzero(mask).tolist(), values, strict=True):
            record = _record(
                keys[i], variant, version, features[i], value, latency, request_id, i, shadow
            )
            records.append(record)
    return durations, records


def _route(
    keys: list[str | None],
    state: st.DeploymentState,
    blue: Any,
    green: Any,
    pinned_as: Variant | None,
) -> tuple[list[Variant], np.ndarray, list[tuple]]:
    """Who answers each ride, which rides green answers, and the scoring groups."""
    policy = state.policy if green is not None else st.SplitPolicy()
    assigned = [assign(policy, key) for key in keys]
    answers = [a.answer for a in assigned]
    shadows = np.array([a.shadow for a in assigned], dtype=bool)
    to_green = np.array([a is Variant.GREEN for a in answers], dtype=bool)
    if pinned_as is not None:  # no green slot here: the one model answers, under its name
        answers = [pinned_as] * len(keys)
    groups = [(pinned_as or Variant.BLUE, blue, state.blue, ~to_green, False)]
    groups += [(Variant.GREEN, green, state.green, to_green, False)]
    groups += [(Variant.GREEN, green, state.green, shadows, True)]
    return answers, to_green, groups


def _answers(
    rides: Rides,
    answers: list[Variant],
    durations: np.ndarray,
    state: st.DeploymentState,
    pinned_as: Variant | None,
) -> list[dict[str, Any]]:
    items = []
    minutes = rounded(durations, ANSWER_DIGITS)
    for i, variant in enumerate(answers):
        green_answer = variant is Variant.GREEN and pinned_as is None
        version = state.green if green_answer else state.blue
        items.append(_answer(minutes[i], variant, version, rides.ride_ids[i]))
    return items


def _answer(
    minutes: float, variant: Variant, version: int | None, ride_id: str | int | None
) -> dict[str, Any]:
    """One ride's answer, as both paths give it (``minutes`` rounded to ANSWER_DIGITS)."""
    item: dict[str, Any] = {
        "duration": minutes,
        "variant": str(variant),
        "model_version": str(version),
    }
    if ride_id is not None:
        item["ride_id"] = ride_id
    return item
