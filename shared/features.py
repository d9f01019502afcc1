"""Features and the model builder: one sklearn Pipeline that carries its own preprocessing.

The course turns every row into a Python dict and feeds a DictVectorizer. That is correct but
slow (millions of dicts) and cannot be served by MLflow's pyfunc, which hands models a frame.
:class:`TripFeaturizer` builds the same sparse design matrix straight from integer columns with
numpy: zones seen in training become one-hot columns, unseen zones become all-zero rows (as
DictVectorizer ignores unseen keys), numeric columns pass through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from shared.data.schema import DISTANCE, DO, PU, TARGET

#: Anything column-addressable: a DataFrame or a dict of equal-length arrays (the fast path
#: the services use for a handful of rows, where building a DataFrame costs more than predicting).
Columns = pd.DataFrame | Mapping[str, Any]


@dataclass(frozen=True)
class FeatureSpec:
    categorical: tuple[str, ...] = (PU, DO)
    numeric: tuple[str, ...] = (DISTANCE,)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.categorical + self.numeric


#: The course's features: pickup and drop-off zone as categories, trip distance.
BASELINE = FeatureSpec()


def _column(X: Columns, name: str) -> np.ndarray:
    try:
        values = X[name]
    except KeyError:
        raise KeyError(f"missing feature column {name!r}") from None
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return np.asarray(values, dtype="float64")


def _n_rows(X: Columns, name: str) -> int:
    return len(X[name])


class TripFeaturizer(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
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
            values = _column(X, name)
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
        for j, (name, lookup) in enumerate(zip(self.categorical, self.lookups_, strict=True)):
            values = _column(X, name)
            ok = np.isfinite(values) & (values >= 0) & (values < lookup.size)
            codes = np.full(n, -1, dtype=np.int64)
            codes[ok] = lookup[values[ok].astype(np.int64)]
            indices[:, j] = codes
        base = self.n_features_out_ - len(self.numeric)
        for j, name in enumerate(self.numeric, start=len(self.categorical)):
            indices[:, j] = base + (j - len(self.categorical))
            data[:, j] = _column(X, name)
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


def build_pipeline(
    spec: FeatureSpec = BASELINE, estimator: BaseEstimator | None = None
) -> Pipeline:
    """The model artifact: featurizer + estimator (the course's LinearRegression by default)."""
    return Pipeline(
        [
            ("features", TripFeaturizer(spec.categorical, spec.numeric)),
            ("regressor", estimator if estimator is not None else LinearRegression()),
        ]
    )


def split_xy(frame: pd.DataFrame, spec: FeatureSpec = BASELINE) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature columns and target of a *validated* frame (see ``shared.data.validate``)."""
    return frame.loc[:, list(spec.columns)], frame[TARGET].to_numpy(dtype="float64")
