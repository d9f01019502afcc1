from __future__ import annotations

import numpy as np
import pytest

from shared.data.validate import ValidationBounds
from shared.serving import RequestValidationError, format_predictions, parse_rides
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


def test_pickup_time_is_read_or_defaults_to_now() -> None:
    rides = parse_rides([ride(pickup_datetime="2019-02-11T08:30:00Z"), ride()], BOUNDS)
    stamps = rides.columns["pickup_datetime"]
    assert stamps[0] == np.datetime64("2019-02-11T08:30:00")
    assert abs(stamps[1] - np.datetime64("now", "s")) < np.timedelta64(5, "s")
