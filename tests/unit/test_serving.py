from __future__ import annotations

import time

import numpy as np
import pytest

from shared.data.validate import ValidationBounds
from shared.serving import RequestValidationError, format_predictions, parse_rides, rounded
from tests.factories import ride

BOUNDS = ValidationBounds()


def errors_of(payload: object, **kwargs: object) -> list[tuple[str, str]]:
    with pytest.raises(RequestValidationError) as info:
        parse_rides(payload, BOUNDS, **kwargs)
    return [(e.field, e.message) for e in info.value.errors]


def test_one_ride() -> None:
    rides = parse_rides(ride(ride_id="a"), BOUNDS)
    assert rides.single and rides.ride_ids == ["a"]
    np.testing.assert_array_equal(rides.columns["PULocationID"], [161])


def test_a_list_of_rides() -> None:
    rides = parse_rides([ride(), ride(trip_distance=0, PULocationID=1.0)], BOUNDS)
    assert not rides.single and len(rides) == 2


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ("text", "body", "expected a JSON object"),
        (7, "body", "expected a JSON object"),
        ([], "body", "empty list"),
        ({"DOLocationID": 1, "trip_distance": 1}, "PULocationID", "got missing"),
        (ride(PULocationID="161"), "PULocationID", "got a str"),
        (ride(PULocationID=True), "PULocationID", "got a bool"),
        (ride(PULocationID=0), "PULocationID", "zone 0 is outside 1..265"),
        (ride(DOLocationID=999), "DOLocationID", "zone 999 is outside 1..265"),
        (ride(DOLocationID=4.5), "DOLocationID", "got 4.5"),
        (ride(trip_distance=-1), "trip_distance", "-1 is outside 0..100 miles"),
        (ride(trip_distance=None), "trip_distance", "got missing"),
        (ride(trip_distance="2"), "trip_distance", "got a str"),
        (ride(trip_distance=float("nan")), "trip_distance", "nan is outside"),
        (ride(ride_id=[1]), "ride_id", "string or an integer"),
        (ride(ride_id="x" * 200), "ride_id", "longer than 128"),
        ([ride(), "x"], "[1]", "expected an object"),
        ([ride(), ride(trip_distance=-2)], "[1].trip_distance", "outside"),
        (ride(pickup_datetime="yesterday"), "pickup_datetime", "not an ISO 8601"),
        (ride(pickup_datetime=1700000000), "pickup_datetime", "ISO 8601 date-time string"),
    ],
)
def test_bad_input_names_the_field(payload: object, field: str, message: str) -> None:
    found = errors_of(payload)
    assert found[0][0] == field
    assert message in found[0][1]


def test_too_many_rides_is_a_400_naming_the_limit() -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_rides([ride()] * 11, BOUNDS, max_rides=10)
    assert info.value.status == 400 and "at most" in str(info.value)


def test_errors_are_capped() -> None:
    assert len(errors_of([ride(PULocationID=0)] * 500)) == 20


def test_response_shape() -> None:
    one = parse_rides(ride(ride_id=5), BOUNDS)
    assert format_predictions(one, np.array([12.34567]), {"model_version": "v"}) == {
        "duration": 12.3457,
        "ride_id": 5,
        "model_version": "v",
    }
    many = parse_rides([ride(), ride(ride_id="b")], BOUNDS)
    body = format_predictions(many, np.array([1.0, 2.0]), {})
    assert body == {"predictions": [{"duration": 1.0}, {"duration": 2.0, "ride_id": "b"}]}


def test_answers_are_rounded_as_round_rounds_them() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.random(20_000) * 120,
            rng.normal(15, 30, 20_000),
            np.round(rng.random(20_000) * 100, 5),  # many a tie, or one ulp beside it
            (np.arange(20_000) + 0.5) / 1e4,
            [0.0, -0.0, -1e-9, np.nan, np.inf, -np.inf, 1e300, 123_456_789.00005, 2.5e-4],
        ]
    )
    expected = [round(v, 4) for v in values.tolist()]
    got = rounded(values, 4)
    assert [repr(v) for v in got] == [repr(v) for v in expected]  # -0.0 and nan too
    assert rounded(values[:3], 4) == expected[:3]  # a few: by round itself


def test_pickup_time_is_read_or_defaults_to_now() -> None:
    rides = parse_rides([ride(pickup_datetime="2019-02-11T08:30:00Z"), ride()], BOUNDS)
    stamps = rides.columns["pickup_datetime"]
    assert stamps[0] == np.datetime64("2019-02-11T08:30:00")
    assert abs(stamps[1] - np.datetime64("now", "s")) < np.timedelta64(5, "s")


@pytest.mark.parametrize(
    ("pickup", "accepted"),
    [
        ("2019-01-01", True),
        ("2019-01-01T10:00:00Z", True),
        ("2019-01-01 10:00", True),
        ("2019-01-01T10:00:00.123456+00:00", True),
        ("2020-02-29T00:00:00", True),  # a leap day
        ("2019-02-29T00:00:00", False),
        ("2019-04-31T00:00:00", False),
        ("NaT", False),
        ("", False),
        ("today", False),
        ("0001-01-01T00:00:00", False),
        ("100000-01-01T00:00:00", False),
        ("2008-12-31T23:59:59", False),
        ("2100-01-01T00:00:00", False),
        ("2019-01-01T00:00:00+05:00", False),  # times are UTC
        ("\u0662\u0660\u0661\u0669-01-01", False),  # Arabic-Indic digits match \\d, not a date
        ("2019-01-01\n", False),
    ],
)
def test_one_validator_for_pickup_times(pickup: str, accepted: bool) -> None:
    from shared.data.validate import PICKUP_PATTERN, parse_pickup

    if accepted:
        parse_pickup(pickup, BOUNDS)
    else:
        with pytest.raises(ValueError, match="date-time"):
            parse_pickup(pickup, BOUNDS)
        assert errors_of(ride(pickup_datetime=pickup))[0][0] == "pickup_datetime"
    # the OpenAPI documents publish the same rule
    import re

    assert bool(re.fullmatch(PICKUP_PATTERN.strip("^$"), pickup)) == accepted


@pytest.mark.parametrize(
    ("ride_id", "problem"),
    [
        ("x" * 129, "longer than 128"),
        ("", "empty"),
        ("\ud800", "lone surrogate"),
        (10**400, "64 bits"),
        (1.5, "got a float"),
        ([], "got a list"),
        (True, "got a bool"),
    ],
)
def test_ride_ids_have_one_rule(ride_id: object, problem: str) -> None:
    from shared.serving import ride_id_problem, ride_key

    assert problem in (ride_id_problem(ride_id) or "")
    assert ride_key(ride_id) is None


def test_integral_float_ids_and_huge_numbers_are_handled() -> None:
    from shared.serving import ride_key

    assert ride_key(4814.0) == "4814" and parse_rides(ride(ride_id=12.0), BOUNDS).ride_ids == [12]
    assert errors_of(ride(PULocationID=10**400))[0][0] == "PULocationID"
    assert errors_of(ride(trip_distance=10**400))[0][0] == "trip_distance"
    message = errors_of(ride(trip_distance="x" * 10_000))[0][1]
    assert len(message) < 100  # a client's value is repeated short


def test_refusals_name_the_ride_they_are_about() -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_rides([ride(), ride(PULocationID=0), ride(trip_distance=-1)], BOUNDS)
    assert [e.index for e in info.value.errors] == [1, 2]


def scraped() -> str:
    """What a scrape by another worker finds in the multiprocess folder."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry).decode()


def test_metrics_go_to_the_multiprocess_folder_even_if_imported_first(tmp_path) -> None:
    """prometheus_client was imported long before (by this test process, as by MLflow in a
    service): preparing the folder must still switch it to files, or /metrics is empty."""
    import os

    import prometheus_client  # noqa: F401 - imported first on purpose
    from prometheus_client import values

    from shared.gunicorn_runner import prepare_metrics_dir
    from shared.metrics import ServiceMetrics

    # restored by hand, not by monkeypatch: prepare_metrics_dir sets the variable itself
    before, saved = values.ValueClass, os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        prepare_metrics_dir(tmp_path / "metrics")
        metrics = ServiceMetrics("probe")
        metrics.observe("/predict", 200, 0.01)
        assert list((tmp_path / "metrics").glob("*.db"))
        text = metrics.render()[0].decode()
        assert 'probe_requests_total{endpoint="/predict",status="200"} 1.0' in text
        # another worker's scrape reads the files: the writer thread puts counts there
        metrics.observe("/predict", 200, 0.01)
        metrics.scored(np.array([3.0, 12.0]))
        deadline = time.monotonic() + 5
        while "probe_predictions_total 2.0" not in (seen := scraped()):
            assert time.monotonic() < deadline, seen
            time.sleep(0.01)
        assert 'probe_requests_total{endpoint="/predict",status="200"} 2.0' in seen
        assert 'probe_predicted_duration_minutes_bucket{le="5.0"} 1.0' in seen
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if saved is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved
        values.ValueClass = before
