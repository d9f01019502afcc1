"""serve_batch (level3_deployment/scoring.py) on its own: rides, keys and state in; answers
and log records out. No Flask, no database: models that answer constants."""

from __future__ import annotations

import dataclasses

import numpy as np

from level3_deployment import state as st
from level3_deployment.prediction_log import PredictionRecord
from level3_deployment.routing import Mode, Variant
from level3_deployment.scoring import serve_batch
from shared.compiled import ServingModel
from shared.data.validate import ValidationBounds
from shared.serving import Rides, parse_rides
from tests.factories import ride


def constant(minutes: float) -> ServingModel:
    return ServingModel(
        lambda c: np.full(len(c["PULocationID"]), minutes), "test", "constant", None
    )


BLUE, GREEN = constant(10.0), constant(20.0)


def deployed(share: float, mode: Mode = Mode.AB) -> st.DeploymentState:
    started = st.start(st.DeploymentState(generation=0), 1, "boot", "t")
    return st.deploy(started, 2, share, mode, "test", "t")


def batch(n: int) -> tuple:
    rides = parse_rides([ride(ride_id=f"r{i}") for i in range(n)], ValidationBounds())
    return rides, [f"r{i}" for i in range(n)]


def test_each_ride_is_answered_by_its_variant_and_logged_once() -> None:
    rides, keys = batch(200)
    served = serve_batch(rides, keys, None, deployed(50.0), (BLUE, GREEN))
    by_variant = {v: [i for i in served.items if i["variant"] == v] for v in ("blue", "green")}
    assert 60 < len(by_variant["green"]) < 140 and served.variant == "mixed"
    assert {i["duration"] for i in by_variant["green"]} == {20.0}
    assert {i["model_version"] for i in by_variant["blue"]} == {"1"}
    assert [i["ride_id"] for i in served.items] == keys  # the rides' order
    assert len(served.records) == 200 and not any(r.shadow for r in served.records)
    assert {(r.request_key, r.variant) for r in served.records} == {
        (i["ride_id"], i["variant"]) for i in served.items
    }


def test_a_ride_keeps_its_variant_from_batch_to_batch() -> None:
    rides, keys = batch(50)
    first = serve_batch(rides, keys, None, deployed(30.0), (BLUE, GREEN))
    again = serve_batch(rides, keys, None, deployed(30.0), (BLUE, GREEN))
    assert [i["variant"] for i in first.items] == [i["variant"] for i in again.items]


def test_shadow_mode_answers_blue_and_logs_green_beside_it() -> None:
    rides, keys = batch(40)
    served = serve_batch(rides, keys, "req-1", deployed(100.0, Mode.SHADOW), (BLUE, GREEN))
    assert {i["variant"] for i in served.items} == {"blue"} and served.variant == "blue"
    shadows = [r for r in served.records if r.shadow]
    assert len(shadows) == 40 and {r.prediction for r in shadows} == {20.0}
    # a retry of this request maps to the same rows
    assert served.records[0].prediction_id == "req-1:0:answer"
    assert shadows[0].prediction_id == "req-1:0:shadow"


def test_without_green_blue_answers_everything() -> None:
    rides, keys = batch(10)
    started = st.start(st.DeploymentState(generation=0), 1, "boot", "t")
    served = serve_batch(rides, keys, None, started, (BLUE, None))
    assert {(i["variant"], i["duration"]) for i in served.items} == {("blue", 10.0)}


def test_a_pinned_service_answers_under_its_variants_name() -> None:
    rides, keys = batch(10)
    started = st.start(st.DeploymentState(generation=0), 7, "pinned", "t")
    served = serve_batch(rides, keys, None, started, (GREEN, None), pinned_as=Variant.GREEN)
    assert {(i["variant"], i["model_version"]) for i in served.items} == {("green", "7")}
    assert {r.variant for r in served.records} == {"green"}


def test_one_ride_is_logged_with_the_features_a_batch_logs_for_it() -> None:
    bounds = ValidationBounds()
    times = ("2019-03-10T07:05:09Z", "2019-12-31 23:59")  # given: "now" would move between parses
    for given in (ride(ride_id="a", pickup_datetime=t) for t in times):
        alone = parse_rides(given, bounds)
        among = parse_rides([given, ride(ride_id="c")], bounds)
        state = deployed(0.0)
        (one,) = serve_batch(alone, ["k"], None, state, (BLUE, None)).records
        first = serve_batch(among, ["k", "c"], None, state, (BLUE, None)).records[0]
        assert one.features == first.features
        assert [type(v) for v in one.features.values()] == [
            type(v) for v in first.features.values()
        ]


def test_a_one_ride_request_is_served_as_a_batch_of_that_ride_is() -> None:
    """One ride (most requests) takes a path of its own, from its scalars: the same routing,
    answers and log records as the batch path gives the same ride."""
    started = st.start(st.DeploymentState(generation=0), 7, "boot", "t")
    cases = [
        (deployed(50.0), (BLUE, GREEN), None),
        (deployed(100.0, Mode.SHADOW), (BLUE, GREEN), None),
        (started, (BLUE, None), None),
        (started, (GREEN, None), Variant.GREEN),
    ]
    pickup = "2019-03-10T07:05:09Z"  # given: "now" would move between parses
    seen = set()
    for state, models, pinned in cases:
        for i in range(20):
            one = parse_rides(ride(ride_id=f"r{i}", pickup_datetime=pickup), ValidationBounds())
            assert one.one is not None  # the scalar path
            as_batch = Rides(one.ride_ids, True, arrays=one.columns)
            fast = serve_batch(one, [f"r{i}"], "req", state, models, pinned)
            slow = serve_batch(as_batch, [f"r{i}"], "req", state, models, pinned)
            assert (fast.items, fast.variant) == (slow.items, slow.variant)
            assert [logged(r) for r in fast.records] == [logged(r) for r in slow.records]
            seen.add((fast.variant, len(fast.records)))
    assert seen == {("blue", 1), ("green", 1), ("blue", 2)}  # answers by both, and shadows


def logged(record: PredictionRecord) -> tuple:
    """A record without its clock readings."""
    return dataclasses.astuple(dataclasses.replace(record, ts=0.0, latency_ms=0.0))
