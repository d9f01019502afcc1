"""The array-speed parse of a list of rides, and the scalar parse of one ride, accept exactly
what the ride-by-ride parse accepts without an error, with the same values; anything else
falls through to the parse that names the field."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from shared.data.validate import ValidationBounds
from shared.features import ride_columns
from shared.serving import (
    RequestValidationError,
    _parse_each,
    _parse_plain,
    _parse_plain_one,
    parse_rides,
)

BOUNDS = ValidationBounds()
NOW = np.datetime64("2024-05-01T12:00:00", "s")

#: values of each field, plain and not: every one the slow path must judge
ZONES: list[Any] = [1, 265, 161, 161.0, 0, 266, 3.5, -1, True, None, "161", float("nan"), 10**400]
MILES: list[Any] = [0, 2.5, 99.0, 100, -0.1, 1e9, float("inf"), None, "2.5", False]
IDS: list[Any] = ["r1", "x" * 128, "x" * 129, "", "\ud800", 7, -(2**63), 2**63, 4.0, None, []]
TIMES: list[Any] = [
    "2019-01-15T08:30:00",
    "2019-01-15 08:30",
    "2019-01-15T08:30:00Z",
    "2019-01-15T08:30:00+00:00",
    "2019-01-15T08:30:00.25",
    "2019-01-15 08:30:59-0000",
    "2019-01-15Z",
    "2019-02-30T00:00:00",
    "2008-12-31T23:59:59",
    "today",
    "NaT",
    "",
    None,
    12,
]


def slow(rides: list[Any], single: bool = False) -> tuple[dict[str, np.ndarray], list[Any]] | None:
    try:
        parsed = _parse_each(rides, single, BOUNDS, NOW)
    except RequestValidationError:
        return None
    return parsed.columns, parsed.ride_ids


def ride(rng: random.Random, plain: bool) -> Any:
    if not plain and rng.random() < 0.05:
        return rng.choice([[], "ride", None])

    def value(values: list[Any], good: int) -> Any:
        return values[rng.randrange(good)] if plain else rng.choice(values)

    out = {
        "PULocationID": value(ZONES, 4),
        "DOLocationID": value(ZONES, 4),
        "trip_distance": value(MILES, 4),
        "ride_id": value(IDS, 2),
        "pickup_datetime": value(TIMES, 7),
    }
    for key in list(out):
        if not plain and rng.random() < 0.03:
            del out[key]
    return out


@pytest.mark.parametrize("seed", range(400))
def test_the_fast_parse_agrees_with_the_ride_by_ride_parse(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 5, 40])
    plain = seed % 2 == 0  # half the batches valid throughout, half with something wrong
    rides = [ride(rng, plain or rng.random() < 0.8) for _ in range(n)]
    fast, expected = _parse_plain(rides, BOUNDS, NOW), slow(rides)
    if plain:
        assert fast is not None and expected is not None, rides
    if fast is None:  # not plainly valid: the slow path judges it, whatever it finds
        return
    assert expected is not None, rides  # the fast path never accepts what the slow one refuses
    for name, values in expected[0].items():
        np.testing.assert_array_equal(fast[0][name], values, err_msg=name)
    assert fast[1] == expected[1]


@pytest.mark.parametrize("seed", range(400))
def test_the_one_ride_fast_parse_agrees_with_the_ride_by_ride_parse(seed: int) -> None:
    rng = random.Random(seed)
    plain = seed % 2 == 0
    one = ride(rng, plain)
    fast, expected = _parse_plain_one(one, BOUNDS, NOW), slow([one], single=True)
    if plain:
        assert fast is not None and expected is not None, one
    if fast is None:
        return
    assert expected is not None, one
    # the ride's scalars, and the columns they make when a Pipeline or a batch needs them
    assert [type(v) for v in fast[0].values()] == [float, float, float, np.datetime64]
    columns = ride_columns(fast[0])
    for name, values in expected[0].items():
        np.testing.assert_array_equal(columns[name], values, err_msg=name)
        assert columns[name].dtype == values.dtype, name
    assert fast[1] == expected[1]
    assert [type(v) for v in fast[1]] == [type(v) for v in expected[1]]


def test_plain_batches_take_the_fast_path() -> None:
    rides = [
        {"PULocationID": 161, "DOLocationID": 236.0, "trip_distance": 2, "ride_id": f"r{i}"}
        for i in range(100)
    ]
    assert _parse_plain(rides, BOUNDS, NOW) is not None
    stamped = [{**r, "pickup_datetime": "2019-01-15T08:30:00Z"} for r in rides]
    columns, ids = _parse_plain(stamped, BOUNDS, NOW) or ({}, [])
    assert ids[:2] == ["r0", "r1"]
    assert columns["pickup_datetime"][0] == np.datetime64("2019-01-15T08:30:00")


def test_one_bad_ride_among_plain_ones_is_still_named() -> None:
    rides: list[dict[str, Any]] = [{"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2}]
    rides = rides * 50 + [{"PULocationID": 161, "DOLocationID": 999, "trip_distance": 2}]
    with pytest.raises(RequestValidationError) as caught:
        parse_rides(rides, BOUNDS)
    assert caught.value.errors[0].field == "[50].DOLocationID"
    assert caught.value.errors[0].index == 50
