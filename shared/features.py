"""Features and the model builder: one sklearn Pipeline that carries its own preprocessing.

The course turns every row into a Python dict and feeds a DictVectorizer. That is correct but
slow (millions of dicts) and cannot be served by MLflow's pyfunc, which hands models a frame.
:class:`TripFeaturizer` builds the same sparse design matrix straight from integer columns with
numpy: zones seen in training become one-hot columns, unseen zones become all-zero rows (as
DictVectorizer ignores unseen keys), numeric columns pass through.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET

#: Anything column-addressable: a DataFrame or a dict of equal-length arrays (the fast path
#: the services use for a handful of rows, where building a DataFrame costs more than predicting).
Columns: TypeAlias = pd.DataFrame | Mapping[str, Any]
#: one ride's raw values as scalars: the zones and miles as numbers, the pickup time a numpy
#: datetime64 (a one-ride request is scored from these, without arrays)
Ride: TypeAlias = Mapping[str, Any]


#: Columns derived from the pickup time (they need ``pickup_datetime`` in the input).
HOUR = "pickup_hour"
WEEKDAY = "pickup_weekday"
HOUR_OF_WEEK = "pickup_hour_of_week"
#: hours since midnight, minutes and seconds included (traffic does not wait for the hour)
TIME_OF_DAY = "pickup_time_of_day"
#: the weekday (Monday=0), or 7 on a US federal holiday (traffic there is a Sunday's, not a
#: Monday's: Memorial Day 2019 is in the level-2 test month)
DAY_TYPE = "pickup_day_type"
HOLIDAY = 7.0
TIME_FEATURES = (HOUR, WEEKDAY, HOUR_OF_WEEK, TIME_OF_DAY, DAY_TYPE)
#: The pickup -> drop-off zone pair as one category (code PU * 1000 + DO).
ZONE_PAIR = "zone_pair"


@dataclass(frozen=True)
class FeatureSpec:
    """Which input columns a model uses: integer categories, numbers, pickup-time features."""

    categorical: tuple[str, ...] = (PU, DO)
    numeric: tuple[str, ...] = (DISTANCE,)
    time: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns a caller must provide."""
        derived = (*TIME_FEATURES, ZONE_PAIR)
        raw = tuple(c for c in self.categorical + self.numeric if c not in derived)
        if ZONE_PAIR in self.categorical:
            raw = tuple(dict.fromkeys((*raw, PU, DO)))
        return raw + ((PICKUP,) if self.needs_pickup_time else ())

    @property
    def needs_pickup_time(self) -> bool:
        return bool(self.time) or any(c in TIME_FEATURES for c in self.categorical)


#: The course's features: pickup and drop-off zone as categories, trip distance.
BASELINE = FeatureSpec()
#: What level 2 adds: when the trip starts (traffic), for models that can use it.
RICH = FeatureSpec(time=(HOUR, WEEKDAY))
#: For linear models: time as one categorical (168 hours of the week) and each zone pair as a
#: level of its own, which a linear model cannot otherwise learn.
RICH_ONE_HOT = FeatureSpec(categorical=(PU, DO, ZONE_PAIR, HOUR_OF_WEEK))
#: For the tree ensemble: the time of day to the second, and holidays as a day of their own.
CALENDAR = FeatureSpec(time=(TIME_OF_DAY, DAY_TYPE))


def holiday_days(first: str = "1970-01-01", last: str = "2099-12-31") -> np.ndarray:
    """US federal holidays as observed (pandas' calendar), as days since 1970-01-01."""
    from pandas.tseries.holiday import USFederalHolidayCalendar

    days = USFederalHolidayCalendar().holidays(first, last).to_numpy().astype("datetime64[D]")
    return days.astype(np.int64)


@dataclass(frozen=True)
class _PickupParts:
    """A pickup column split once into what every time feature is made of."""

    days: np.ndarray  # datetime64[D]
    since_midnight: np.ndarray  # seconds (garbage where missing: masked by each feature)
    weekday: np.ndarray  # Monday=0, as floats
    missing: np.ndarray

    @classmethod
    def of(cls, X: Columns) -> _PickupParts:
        values = X[PICKUP]
        if isinstance(values, pd.Series):
            values = values.to_numpy()
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.datetime64):
            values = pd.to_datetime(values).to_numpy()  # ISO strings from JSON requests
        seconds = values.astype("datetime64[s]")
        days = seconds.astype("datetime64[D]")
        weekday = ((days.astype(np.int64) + 3) % 7).astype(np.float64)  # 1970-01-01: Thursday
        return cls(days, (seconds - days).astype(np.int64), weekday, np.isnat(seconds))


def _time_feature(parts: _PickupParts, name: str, holidays: np.ndarray | None) -> np.ndarray:
    if name == TIME_OF_DAY:
        value = parts.since_midnight / 3600.0
    elif name == HOUR:
        value = (parts.since_midnight // 3600).astype(np.float64)
    elif name == WEEKDAY:
        value = parts.weekday.copy()
    elif name == DAY_TYPE:
        table = default_holiday_table() if holidays is None else holidays
        holiday = table_lookup(parts.days.astype(np.float64), table, False)
        value = np.where(holiday, HOLIDAY, parts.weekday)
    else:
        value = parts.weekday * 24 + parts.since_midnight // 3600
    value[parts.missing] = np.nan
    return value


def holiday_table(days: np.ndarray) -> np.ndarray:
    """True at each day number in ``days`` (days since 1970-01-01; for :func:`table_lookup`)."""
    table = np.zeros(int(days.max()) + 1 if days.size else 0, dtype=bool)
    table[days] = True
    return table


@functools.cache
def default_holiday_table() -> np.ndarray:
    """:func:`holiday_table` of pandas' calendar, built once (a fitted featurizer keeps its own)."""
    table = holiday_table(holiday_days())
    table.setflags(write=False)
    return table


def feature_column(X: Columns, name: str, holidays: np.ndarray | None = None) -> np.ndarray:
    """One feature column as floats, derived ones (pickup hour, weekday, zone pair) included;
    ``holidays`` (a :func:`holiday_table`) for the day type, pandas' calendar when None."""
    if name in TIME_FEATURES:
        return _time_feature(_PickupParts.of(X), name, holidays)
    if name == ZONE_PAIR:
        return zone_pair(feature_column(X, PU), feature_column(X, DO))
    try:
        values = X[name]
    except KeyError:
        raise KeyError(f"missing feature column {name!r}") from None
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def feature_columns(
    X: Columns, names: Sequence[str], holidays: np.ndarray | None = None
) -> list[np.ndarray]:
    """:func:`feature_column` of each name, reading the pickup time once for all of its parts
    (parsing it is a fifth of a one-ride transform)."""
    parts: _PickupParts | None = None
    columns = []
    for name in names:
        if name in TIME_FEATURES:
            parts = parts if parts is not None else _PickupParts.of(X)
            columns.append(_time_feature(parts, name, holidays))
        else:
            columns.append(feature_column(X, name))
    return columns


def table_lookup(values: np.ndarray, table: np.ndarray, default: Any) -> np.ndarray:
    """``table[value]`` for each value that is a whole number inside the table, ``default``
    for the rest (NaN, negative, beyond it): how a category becomes a code, a weight or a
    flag, in the featurizers and in their compiled forms (shared/compiled.py) alike."""
    inside = np.isfinite(values) & (values >= 0) & (values < table.size)
    found = np.full(values.shape, default, dtype=table.dtype)
    found[inside] = table[values[inside].astype(np.int64)]
    return found


def table_value(value: float, table: Any, default: Any) -> Any:
    """:func:`table_lookup`'s rule for one value (a Python float; ``table`` a list or an
    array): the entry when the value is a number inside the table (NaN fails the comparison,
    and a fraction is cut as ``astype(int64)`` cuts it), else ``default``."""
    return table[int(value)] if 0.0 <= value < len(table) else default


def zone_pair(pu: Any, do: Any) -> Any:
    """The zone pair's code (floats or arrays of them): one formula for both paths."""
    return pu * 1000 + do


def _n_rows(X: Columns, name: str) -> int:
    if name == ZONE_PAIR:
        name = PU
    return len(X[PICKUP if name in TIME_FEATURES else name])


# sklearn is untyped: mypy sees object.__init_subclass__, which takes no keyword
class TripFeaturizer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):  # type: ignore[call-arg]
    """One-hot integer categories + passthrough numerics, as a CSR matrix.

    ``auto_wrap_output_keys=None`` opts out of sklearn's ``set_output`` wrapper: the output is
    sparse, so it could never become a DataFrame, and the wrapper's input probing costs more
    than the transform itself on the one-ride requests a service sees.
    """

    def __init__(
        self,
        categorical: Sequence[str] = BASELINE.categorical,
        numeric: Sequence[str] = BASELINE.numeric,
    ) -> None:
        self.categorical = categorical
        self.numeric = numeric

    def fit(self, X: Columns, y: object = None) -> TripFeaturizer:
        self.categories_: list[np.ndarray] = []
        self.lookups_: list[np.ndarray] = []
        offset = 0
        for name in self.categorical:
            values = feature_column(X, name)
            values = values[np.isfinite(values)]
            categories = np.unique(values.astype(np.int64))
            if categories.size and categories[0] < 0:
                raise ValueError(f"{name}: categories must be non-negative integers")
            lookup = np.full(int(categories[-1]) + 1 if categories.size else 0, -1, dtype=np.int64)
            lookup[categories] = offset + np.arange(categories.size)
            self.categories_.append(categories)
            self.lookups_.append(lookup)
            offset += categories.size
        self.n_features_out_ = offset + len(self.numeric)
        return self

    def transform(self, X: Columns) -> sp.csr_matrix:
        if not hasattr(self, "lookups_"):  # check_is_fitted is slow on the serving path
            raise NotFittedError("TripFeaturizer is not fitted yet; call fit first")
        key = (self.categorical or self.numeric)[0]
        n = _n_rows(X, key)
        k = len(self.categorical) + len(self.numeric)
        indices = np.empty((n, k), dtype=np.int64)
        data = np.ones((n, k), dtype=np.float64)
        categories = feature_columns(X, self.categorical)
        for j, (values, lookup) in enumerate(zip(categories, self.lookups_, strict=True)):
            indices[:, j] = table_lookup(values, lookup, -1)
        base = self.n_features_out_ - len(self.numeric)
        for j, name in enumerate(self.numeric, start=len(self.categorical)):
            indices[:, j] = base + (j - len(self.categorical))
            data[:, j] = feature_column(X, name)
        present = indices >= 0
        if present.all():
            indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
            return sp.csr_matrix(
                (data.ravel(), indices.ravel(), indptr), shape=(n, self.n_features_out_)
            )
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(present.sum(axis=1), out=indptr[1:])
        return sp.csr_matrix(
            (data[present], indices[present], indptr), shape=(n, self.n_features_out_)
        )

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "lookups_")
        names = [
            f"{name}={int(c)}"
            for name, cats in zip(self.categorical, self.categories_, strict=True)
            for c in cats
        ]
        return np.asarray([*names, *self.numeric], dtype=object)


# sklearn is untyped: mypy sees object.__init_subclass__, which takes no keyword
class TabularFeaturizer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):  # type: ignore[call-arg]
    """A dense matrix for tree models: numerics, pickup-time parts, then category codes.

    Categories become codes 0..K-1 for the K most frequent values seen in training, and K for
    anything else (rare or unseen), so that gradient-boosted trees can treat zones as native
    categoricals (they allow at most 255 levels; NYC has 265 zones). The column order is fixed
    by the spec, so :meth:`categorical_indices` is known before fitting. With the day type among
    its time features it keeps the holiday calendar it was fitted with (``holidays_``), so a
    newer pandas with another calendar cannot change what a registered model answers.
    """

    def __init__(
        self,
        categorical: Sequence[str] = RICH.categorical,
        numeric: Sequence[str] = RICH.numeric,
        time: Sequence[str] = RICH.time,
        max_categories: int = 254,
    ) -> None:
        self.categorical = categorical
        self.numeric = numeric
        self.time = time
        self.max_categories = max_categories

    def categorical_indices(self) -> list[int]:
        start = len(self.numeric) + len(self.time)
        return list(range(start, start + len(self.categorical)))

    def fit(self, X: Columns, y: object = None) -> TabularFeaturizer:
        self.lookups_: list[np.ndarray] = []
        for name in self.categorical:
            values = feature_column(X, name)
            values = values[np.isfinite(values) & (values >= 0)].astype(np.int64)
            counts = np.bincount(values) if values.size else np.zeros(1, dtype=np.int64)
            # Most frequent first; ties broken by value so the codes are deterministic.
            order = np.lexsort((np.arange(counts.size), -counts))
            kept = order[: self.max_categories][counts[order[: self.max_categories]] > 0]
            lookup = np.full(counts.size, self.max_categories, dtype=np.float64)
            lookup[kept] = np.arange(kept.size)
            self.lookups_.append(lookup)
        self.holidays_ = np.array(default_holiday_table()) if DAY_TYPE in self.time else None
        return self

    def transform(self, X: Columns) -> np.ndarray:
        if not hasattr(self, "lookups_"):
            raise NotFittedError("TabularFeaturizer is not fitted yet; call fit first")
        names = (*self.numeric, *self.time, *self.categorical)
        # models fitted before the day type existed have no calendar and never need one
        columns = feature_columns(X, names, getattr(self, "holidays_", None))
        for j, lookup in enumerate(self.lookups_, start=len(self.numeric) + len(self.time)):
            values = columns[j]
            codes = table_lookup(values, lookup, float(self.max_categories))
            codes[np.isnan(values)] = np.nan
            columns[j] = codes
        return np.column_stack(columns)

    def transform_one(self, ride: Ride) -> list[float] | None:
        """:meth:`transform` of one ride's scalars as a list of Python floats, or None when
        the ride needs the array path (its pickup time is missing or not a numpy datetime).
        The same arithmetic in the same order (IEEE doubles either way, so the same bits),
        without numpy's per-call cost: half of a one-ride prediction by compiled trees. Proven
        equal to :meth:`transform` by the compiled predictor's probe (shared/compiled.py) and
        in tests/unit/test_features.py."""
        if not hasattr(self, "lookups_"):
            raise NotFittedError("TabularFeaturizer is not fitted yet; call fit first")
        names = (*self.numeric, *self.time, *self.categorical)
        row = one_ride_values(ride, names, getattr(self, "holidays_", None))
        if row is None:
            return None
        other = float(self.max_categories)
        for j, lookup in enumerate(self.lookups_, start=len(self.numeric) + len(self.time)):
            if row[j] == row[j]:  # NaN stays missing
                row[j] = float(table_value(row[j], lookup, other))
        return row

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([*self.numeric, *self.time, *self.categorical], dtype=object)


def one_ride_values(
    ride: Ride, names: Sequence[str], holidays: np.ndarray | None = None
) -> list[float] | None:
    """:func:`feature_columns` of one ride's scalars as Python floats (the same arithmetic,
    so the same bits), or None when its pickup time needs the array path."""
    clock: _Clock | None = None
    values = []
    for name in names:
        if name in TIME_FEATURES:
            clock = clock or _Clock.of(ride[PICKUP], holidays)
            if clock is None:
                return None
            values.append(float(clock.feature(name)))
        else:
            values.append(_one_value(ride, name))
    return values


def _one_value(ride: Ride, name: str) -> float:
    """:func:`feature_column` of one ride, for a non-time feature, as a float."""
    if name == ZONE_PAIR:
        return zone_pair(_one_value(ride, PU), _one_value(ride, DO))
    try:
        return float(ride[name])
    except KeyError:
        raise KeyError(f"missing feature column {name!r}") from None


def ride_columns(ride: Ride) -> dict[str, np.ndarray]:
    """One ride's scalars as the one-row columns that the array path and a Pipeline read."""
    return {
        name: np.array([value], dtype="datetime64[s]" if name == PICKUP else np.float64)
        for name, value in ride.items()
    }


_SECONDS = np.dtype("datetime64[s]")
_NAT = int(np.datetime64("NaT", "s").view(np.int64))


@dataclass(frozen=True)
class _Clock:
    """One pickup time's parts, as :class:`_PickupParts` has them for a column."""

    day: int  # days since 1970-01-01
    since_midnight: int  # seconds
    weekday: float  # Monday=0
    holidays: np.ndarray | None

    @classmethod
    def of(cls, pickup: Any, holidays: np.ndarray | None) -> _Clock | None:
        if not isinstance(pickup, np.datetime64):
            return None
        if pickup.dtype != _SECONDS:
            pickup = pickup.astype(_SECONDS)
        # the scalar's integer, read rather than converted (numpy's per-call cost is most of
        # a one-ride featurization); NaT is the smallest int64
        seconds = int(pickup.view(np.int64))
        if seconds == _NAT:
            return None
        day, since_midnight = divmod(seconds, 86400)
        return cls(day, since_midnight, float((day + 3) % 7), holidays)

    def feature(self, name: str) -> float:
        if name == TIME_OF_DAY:
            return self.since_midnight / 3600.0
        if name == HOUR:
            return float(self.since_midnight // 3600)
        if name == WEEKDAY:
            return self.weekday
        if name == DAY_TYPE:
            table = default_holiday_table() if self.holidays is None else self.holidays
            holiday = bool(table_value(float(self.day), table, False))
            return HOLIDAY if holiday else self.weekday
        return self.weekday * 24 + self.since_midnight // 3600


def build_pipeline(
    spec: FeatureSpec = BASELINE, estimator: BaseEstimator | None = None
) -> Pipeline:
    """One-hot features + estimator (the course's LinearRegression by default)."""
    categorical = spec.categorical + tuple(t for t in spec.time if t not in spec.categorical)
    return Pipeline(
        [
            ("features", TripFeaturizer(categorical, spec.numeric)),
            ("regressor", estimator if estimator is not None else LinearRegression()),
        ]
    )


def split_xy(frame: pd.DataFrame, spec: FeatureSpec = BASELINE) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature columns and target of a *validated* frame (see ``shared.data.validate``)."""
    return frame.loc[:, list(spec.columns)], frame[TARGET].to_numpy(dtype="float64")
