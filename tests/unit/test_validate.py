from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET
from shared.data.validate import REASONS, ValidationBounds, check_quality, clean_trips
from shared.errors import DataQualityError, SchemaError
from tests.factories import trips

BOUNDS = ValidationBounds(min_rows=1)


def test_valid_rows_pass_with_duration_in_minutes() -> None:
    clean, report = clean_trips(trips(4, minutes=[5, 10, 20, 59.5]), BOUNDS)
    assert report.rows_in == report.rows_out == 4
    assert report.dropped == {}
    np.testing.assert_allclose(clean[TARGET], [5, 10, 20, 59.5])
    assert clean[PU].dtype == np.int64


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (PU, pd.NA, "missing_value"),
        (DISTANCE, np.nan, "missing_value"),
        (PICKUP, pd.NaT, "missing_value"),
        (PU, 0, "zone_out_of_range"),
        (DO, 266, "zone_out_of_range"),
        (DISTANCE, -0.5, "distance_out_of_range"),
        (DISTANCE, 25_000.0, "distance_out_of_range"),
        (DISTANCE, np.inf, "distance_out_of_range"),
        (PICKUP, pd.Timestamp("2008-12-31 23:00"), "pickup_outside_month"),
        ("minutes", -3.0, "duration_not_positive"),
        ("minutes", 0.0, "duration_not_positive"),
        ("minutes", 26 * 60.0, "duration_over_limit"),
        ("minutes", 0.5, "duration_outside_target"),
        ("minutes", 61.0, "duration_outside_target"),
    ],
)
def test_each_bad_value_is_dropped_with_its_reason(column: str, value: object, reason: str) -> None:
    frame = trips(5)
    if column == "minutes":
        frame["dropoff_datetime"] = frame[PICKUP] + pd.to_timedelta(
            [10, value, 10, 10, 10], unit="m"
        )
    else:
        if column == PICKUP:
            frame[PICKUP] = frame[PICKUP].astype("datetime64[us]")
        frame.loc[1, column] = value
    clean, report = clean_trips(frame, BOUNDS, month="2019-01")
    assert report.dropped == {reason: 1}
    assert report.rows_out == 4 == len(clean)


def test_counts_add_up_and_each_row_has_one_reason() -> None:
    frame = trips(6)
    frame.loc[0, PU] = 0
    frame.loc[0, DISTANCE] = -1  # also bad, but counted once, under the first reason
    frame.loc[1, DISTANCE] = 500
    _, report = clean_trips(frame, BOUNDS)
    assert report.dropped == {"zone_out_of_range": 1, "distance_out_of_range": 1}
    assert report.rows_in - report.rows_out == sum(report.dropped.values())
    assert set(report.dropped) <= set(REASONS)


def test_pickups_just_before_the_month_are_kept() -> None:
    frame = trips(3)
    frame[PICKUP] = frame[PICKUP].astype("datetime64[us]")
    frame.loc[0, PICKUP] = pd.Timestamp("2018-12-31 20:00")
    frame.loc[0, "dropoff_datetime"] = pd.Timestamp("2018-12-31 20:15")
    _, report = clean_trips(frame, BOUNDS, month="2019-01")
    assert report.rows_out == 3


def test_month_is_inferred_when_not_given() -> None:
    frame = trips(5)
    frame[PICKUP] = frame[PICKUP].astype("datetime64[us]")
    frame.loc[4, PICKUP] = pd.Timestamp("2019-03-10")
    frame.loc[4, "dropoff_datetime"] = pd.Timestamp("2019-03-10 00:10")
    _, report = clean_trips(frame, BOUNDS)
    assert report.month == "2019-01"
    assert report.dropped == {"pickup_outside_month": 1}


def test_zone_given_as_text_or_fraction() -> None:
    frame = trips(3)
    frame[PU] = ["100", "abc", 101.5]
    _, report = clean_trips(frame, BOUNDS)
    assert report.dropped == {"missing_value": 1, "zone_out_of_range": 1}


def test_missing_column_is_named() -> None:
    with pytest.raises(SchemaError, match=r"src: missing required column.*trip_distance"):
        clean_trips(trips(3).drop(columns=[DISTANCE]), BOUNDS, source="src")


def test_quality_gate_refuses_a_garbage_month() -> None:
    frame = trips(10)
    frame.loc[:6, DISTANCE] = 30_000.0
    _, report = clean_trips(frame, BOUNDS)
    with pytest.raises(
        DataQualityError, match=r"70% of rows are invalid \(distance_out_of_range: 7\)"
    ):
        check_quality(report, BOUNDS)


def test_quality_gate_ignores_the_target_range() -> None:
    """Slow traffic pushes trips past 60 minutes: that is drift, not bad data."""
    _, report = clean_trips(trips(10, minutes=[70] * 6 + [10] * 4), BOUNDS)
    check_quality(report, BOUNDS)
    assert report.glitch_fraction == 0


def test_quality_gate_needs_enough_rows() -> None:
    _, report = clean_trips(trips(5), BOUNDS)
    with pytest.raises(DataQualityError, match="only 5 valid rows of 5; at least 100"):
        check_quality(report, ValidationBounds())


def test_report_is_json_ready() -> None:
    _, report = clean_trips(trips(3, minutes=[5, -1, 5]), BOUNDS, source="f")
    assert report.to_dict() == {
        "source": "f",
        "rows_in": 3,
        "rows_out": 2,
        "dropped": {"duration_not_positive": 1},
        "month": "2019-01",
        "glitch_fraction": pytest.approx(1 / 3, abs=1e-6),
    }
