from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression

from shared.features import BASELINE, TripFeaturizer, build_pipeline, split_xy
from tests.factories import trips


def frame(pu: list[int], do: list[int], dist: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"PULocationID": pu, "DOLocationID": do, "trip_distance": dist})


def test_one_hot_matches_dict_vectorizer_up_to_column_order() -> None:
    train = frame([1, 2, 2, 7], [3, 3, 9, 1], [0.5, 1.0, 2.0, 0.0])
    ours = TripFeaturizer().fit(train)
    dv = DictVectorizer()
    dicts = train.astype({"PULocationID": str, "DOLocationID": str}).to_dict(orient="records")
    reference = dv.fit_transform(dicts)
    ours_named = dict(
        zip(ours.get_feature_names_out(), ours.transform(train).T.toarray(), strict=True)
    )
    ref_named = dict(zip(dv.get_feature_names_out(), reference.T.toarray(), strict=True))
    assert ours_named.keys() == ref_named.keys()
    for name, column in ours_named.items():
        np.testing.assert_array_equal(column, ref_named[name])


def test_unseen_and_out_of_range_zones_give_no_column() -> None:
    enc = TripFeaturizer().fit(frame([1, 2], [3, 4], [1.0, 2.0]))
    X = enc.transform(frame([5, 1, 999], [3, 300, 4], [1.0, 2.0, 3.0])).toarray()
    assert X.shape == (3, 5)
    np.testing.assert_array_equal(X[0], [0, 0, 1, 0, 1.0])  # PU 5 unseen
    np.testing.assert_array_equal(X[1], [1, 0, 0, 0, 2.0])  # DO 300 unseen
    np.testing.assert_array_equal(X[2], [0, 0, 0, 1, 3.0])


def test_accepts_a_dict_of_arrays_like_a_frame() -> None:
    train = frame([1, 2, 3], [3, 4, 5], [1.0, 2.0, 3.0])
    enc = TripFeaturizer().fit(train)
    as_dict = {k: np.asarray(v) for k, v in train.items()}
    assert (enc.transform(as_dict) != enc.transform(train)).nnz == 0


def test_nullable_integer_columns() -> None:
    train = trips(5)
    enc = TripFeaturizer().fit(train)
    assert enc.transform(train).shape == (5, enc.n_features_out_)


def test_missing_column_is_named() -> None:
    enc = TripFeaturizer().fit(frame([1], [2], [1.0]))
    with pytest.raises(KeyError, match="trip_distance"):
        enc.transform(frame([1], [2], [1.0]).drop(columns=["trip_distance"]))


def test_pipeline_predictions_equal_the_dict_vectorizer_recipe() -> None:
    rng = np.random.default_rng(0)
    n = 400
    train = frame(
        rng.integers(1, 20, n).tolist(),
        rng.integers(1, 20, n).tolist(),
        rng.uniform(0, 10, n).tolist(),
    )
    y = 3 + 2 * train.trip_distance + train.PULocationID * 0.1 + rng.normal(0, 1, n)
    test = frame(
        rng.integers(1, 25, 50).tolist(),
        rng.integers(1, 25, 50).tolist(),
        rng.uniform(0, 10, 50).tolist(),
    )
    pipe = build_pipeline().fit(train, y)
    dv = DictVectorizer()

    def to_dicts(f: pd.DataFrame) -> list[dict]:
        return f.astype({"PULocationID": str, "DOLocationID": str}).to_dict(orient="records")

    lr = LinearRegression().fit(dv.fit_transform(to_dicts(train)), y)
    np.testing.assert_allclose(
        pipe.predict(test), lr.predict(dv.transform(to_dicts(test))), rtol=1e-6, atol=1e-6
    )


def test_split_xy_uses_the_spec() -> None:
    from shared.data.validate import ValidationBounds, clean_trips

    clean, _ = clean_trips(trips(4), ValidationBounds(min_rows=1))
    X, y = split_xy(clean)
    assert list(X.columns) == list(BASELINE.columns)
    assert y.shape == (4,)


def test_pickup_time_features_from_datetimes_and_strings() -> None:
    from shared.features import HOUR, HOUR_OF_WEEK, WEEKDAY, feature_column

    stamps = pd.Series(pd.to_datetime(["2019-01-07 08:30", "2019-01-13 23:59"]))  # Mon, Sun
    for values in (stamps, stamps.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy()):
        X = {"pickup_datetime": values}
        np.testing.assert_array_equal(feature_column(X, HOUR), [8, 23])
        np.testing.assert_array_equal(feature_column(X, WEEKDAY), [0, 6])
        np.testing.assert_array_equal(feature_column(X, HOUR_OF_WEEK), [8, 6 * 24 + 23])


def test_time_of_day_and_day_type_with_federal_holidays() -> None:
    from shared.features import DAY_TYPE, HOLIDAY, TIME_OF_DAY, feature_column

    # Memorial Day 2019 (a Monday), the Sunday before it, a plain Tuesday, a missing time
    X = {
        "pickup_datetime": np.array(
            ["2019-05-27T08:30:36", "2019-05-26T23:59:24", "2019-05-28T00:00:00", "NaT"],
            dtype="datetime64[s]",
        )
    }
    np.testing.assert_allclose(
        feature_column(X, TIME_OF_DAY), [8.51, 23.99, 0.0, np.nan], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(feature_column(X, DAY_TYPE), [HOLIDAY, 6, 1, np.nan])


def test_a_fitted_featurizer_keeps_its_holiday_calendar(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later pandas with another calendar must not change what a registered model sees."""
    import shared.features as features

    train = pd.DataFrame(
        {
            "PULocationID": [1, 2],
            "DOLocationID": [3, 4],
            "trip_distance": [1.0, 2.0],
            "pickup_datetime": pd.to_datetime(["2019-05-27 08:00", "2019-05-28 08:00"]),
        }
    )
    enc = features.TabularFeaturizer(time=features.CALENDAR.time).fit(train)
    monkeypatch.setattr(features, "default_holiday_table", lambda: np.zeros(1, dtype=bool))
    np.testing.assert_array_equal(enc.transform(train)[:, 2], [features.HOLIDAY, 1])
    fresh = features.TabularFeaturizer(time=features.CALENDAR.time).fit(train)
    np.testing.assert_array_equal(fresh.transform(train)[:, 2], [0, 1])


def test_tabular_featurizer_caps_categories_and_keeps_order() -> None:
    from shared.features import TabularFeaturizer

    train = pd.DataFrame(
        {
            "PULocationID": [5, 5, 5, 7, 7, 9],
            "DOLocationID": [1, 2, 3, 1, 2, 1],
            "trip_distance": [1.0, 2, 3, 4, 5, 6],
            "pickup_datetime": pd.to_datetime(["2019-01-07 08:00"] * 6),
        }
    )
    enc = TabularFeaturizer(max_categories=2).fit(train)
    assert enc.categorical_indices() == [3, 4]
    X = enc.transform(train.assign(PULocationID=[5, 7, 9, 300, 5, 5]))
    np.testing.assert_array_equal(X[:, 0], train.trip_distance)
    np.testing.assert_array_equal(X[:, 1:3], [[8, 0]] * 6)  # hour, weekday
    np.testing.assert_array_equal(
        X[:, 3], [0, 1, 2, 2, 0, 0]
    )  # 5 most frequent, 9 and 300 -> other


def test_zone_pair_is_one_category() -> None:
    from shared.features import ZONE_PAIR

    train = frame([1, 1, 2], [3, 4, 3], [1.0, 1.0, 1.0])
    enc = TripFeaturizer(categorical=(ZONE_PAIR,), numeric=()).fit(train)
    assert list(enc.get_feature_names_out()) == [
        "zone_pair=1003",
        "zone_pair=1004",
        "zone_pair=2003",
    ]


@pytest.mark.parametrize(
    "time",
    [("pickup_hour", "pickup_weekday"), ("pickup_time_of_day", "pickup_day_type"),
     ("pickup_hour_of_week",), ()],
)  # fmt: skip
@pytest.mark.parametrize("categorical", [("PULocationID", "DOLocationID"), ("zone_pair",)])
def test_one_row_in_python_floats_is_the_transform_bit_for_bit(
    time: tuple[str, ...], categorical: tuple[str, ...]
) -> None:
    from shared.compiled import probe_rides
    from shared.features import TabularFeaturizer

    train = probe_rides(400, seed=1)
    enc = TabularFeaturizer(categorical, time=time, max_categories=50).fit(train)
    rides = probe_rides(600, seed=2)
    # zones it never saw, beyond its tables, missing, fractional; a distance of NaN
    rides["PULocationID"][:5] = [0.0, 266.0, 1e9, np.nan, 3.5]
    rides["trip_distance"][5] = np.nan
    expected = enc.transform(rides)
    for i in range(len(rides["PULocationID"])):
        row = enc.transform_one({k: v[i] for k, v in rides.items()})
        np.testing.assert_array_equal(np.array(row), expected[i])
        assert np.array(row).tobytes() == expected[i].tobytes()  # -0.0 and NaN as well


def test_one_row_without_a_usable_pickup_time_takes_the_array_path() -> None:
    from shared.compiled import probe_rides
    from shared.features import CALENDAR, TabularFeaturizer

    enc = TabularFeaturizer(time=CALENDAR.time).fit(probe_rides(50))
    ride = {k: v[0] for k, v in probe_rides(50).items()}
    assert enc.transform_one(ride) is not None
    for pickup in (np.datetime64("NaT", "s"), "2019-02-04T08:00:00", None):
        assert enc.transform_one({**ride, "pickup_datetime": pickup}) is None
    assert TabularFeaturizer(time=()).fit(probe_rides(50)).transform_one(ride) is not None


@pytest.mark.parametrize("unit", ["D", "m", "ms", "ns"])
def test_one_row_reads_a_pickup_in_any_unit_as_the_array_path_does(unit: str) -> None:
    from shared.compiled import probe_rides
    from shared.features import CALENDAR, TabularFeaturizer

    enc = TabularFeaturizer(time=CALENDAR.time).fit(probe_rides(50))
    ride = {k: v[7] for k, v in probe_rides(50).items()}
    for pickup in ("2019-02-18T23:59:59.999", "1969-12-31T23:30:00.5", "2019-07-04"):
        value = np.datetime64(pickup).astype(f"datetime64[{unit}]")
        one = {**ride, "pickup_datetime": value}
        columns = {k: np.array([v]) for k, v in one.items()}
        assert enc.transform_one(one) == enc.transform(columns)[0].tolist(), (pickup, unit)
    assert enc.transform_one({**ride, "pickup_datetime": np.datetime64("NaT", unit)}) is None
