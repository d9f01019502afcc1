"""Model families: how to build each kind of model (features + estimator) from parameters.

Every level builds its models here. Level 1 uses the course's ``linear`` family; level 2 searches
the others' parameters. A family's Pipeline carries its own featurization, so a registered model
is served without any feature code outside the artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from shared.data.schema import PICKUP
from shared.errors import ConfigError
from shared.features import (
    BASELINE,
    CALENDAR,
    RICH,
    RICH_ONE_HOT,
    Columns,
    FeatureSpec,
    TabularFeaturizer,
    build_pipeline,
)


@dataclass(frozen=True)
class Param:
    """One searched parameter and its range (level 2's search samples it, log-uniformly when
    ``log``); an ``integer`` parameter takes whole values."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class Family:
    name: str
    spec: FeatureSpec
    description: str
    build: Callable[[Mapping[str, Any], int], Pipeline]
    #: default parameters (the whole model when the family has nothing to search); a
    #: search's first trial, and the value of every parameter it does not search
    defaults: Mapping[str, Any]
    #: what level 2 searches, in this order (nothing: one trial at the defaults)
    search: tuple[Param, ...] = ()
    #: keyword arguments for the Pipeline's ``fit`` from the parameters and the training
    #: columns (the ensemble's recency weights); training goes through :func:`fit_model`
    fit_params: Callable[[Mapping[str, Any], Columns], dict[str, Any]] | None = None


def _linear(params: Mapping[str, Any], seed: int) -> Pipeline:
    return build_pipeline(BASELINE, LinearRegression())


def _ridge(params: Mapping[str, Any], seed: int) -> Pipeline:
    return build_pipeline(RICH_ONE_HOT, Ridge(alpha=float(params["alpha"])))


def _boosted_trees(
    params: Mapping[str, Any], featurizer: TabularFeaturizer, seed: int, patience: int
) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=float(params["learning_rate"]),
        max_iter=int(params["max_iter"]),
        max_leaf_nodes=int(params["max_leaf_nodes"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        l2_regularization=float(params["l2_regularization"]),
        max_features=float(params.get("max_features", 1.0)),
        categorical_features=featurizer.categorical_indices(),
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=patience,
        random_state=seed,
    )


def _hgb(params: Mapping[str, Any], seed: int) -> Pipeline:
    featurizer = TabularFeaturizer(RICH.categorical, RICH.numeric, RICH.time)
    regressor = _boosted_trees(params, featurizer, seed, patience=20)
    return Pipeline([("features", featurizer), ("regressor", regressor)])


def _hgb_ensemble(params: Mapping[str, Any], seed: int) -> Pipeline:
    featurizer = TabularFeaturizer(CALENDAR.categorical, CALENDAR.numeric, CALENDAR.time)
    members = [
        (f"seed{seed + i}", _boosted_trees(params, featurizer, seed + i, patience=30))
        for i in range(int(params["n_models"]))
    ]
    return Pipeline([("features", featurizer), ("regressor", VotingRegressor(members))])


def recency_weights(pickup: Any, strength: float) -> np.ndarray:
    """Sample weights rising linearly with the pickup time, from ``1 - strength`` for the
    oldest trip to ``1 + strength`` for the newest (mean 1): traffic drifts, and the last
    training month is the closest to the month the model will serve."""
    if not 0.0 <= strength < 1.0:
        raise ConfigError(f"recency: {strength} is not in [0, 1)")
    stamps = np.asarray(pickup, dtype="datetime64[s]")
    missing = np.isnat(stamps)
    seconds = stamps.astype(np.int64).astype(np.float64)
    known = seconds[~missing]
    span = float(known.max() - known.min()) if known.size else 0.0
    if span <= 0.0:
        return np.ones(seconds.shape)
    position = np.where(missing, 0.5, (seconds - known.min()) / span)
    return 1.0 - strength + 2.0 * strength * position


def _recent_first(params: Mapping[str, Any], X: Columns) -> dict[str, Any]:
    weights = recency_weights(X[PICKUP], float(params["recency"]))
    return {"regressor__sample_weight": weights}


FAMILIES: dict[str, Family] = {
    "linear": Family(
        "linear",
        BASELINE,
        "the course's recipe: one-hot zones + distance, LinearRegression",
        _linear,
        {},
    ),
    "ridge": Family(
        "ridge",
        RICH_ONE_HOT,
        "one-hot zones and hour of the week + distance, Ridge",
        _ridge,
        {"alpha": 3.0},
        (Param("alpha", 0.1, 100.0, log=True),),
    ),
    "hgb": Family(
        "hgb",
        RICH,
        "gradient-boosted trees on distance, pickup hour and weekday, zones as categories",
        _hgb,
        {
            "learning_rate": 0.1,
            "max_iter": 500,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 0.001,
        },
        (
            Param("learning_rate", 0.03, 0.3, log=True),
            Param("max_leaf_nodes", 15, 127, log=True, integer=True),
            Param("min_samples_leaf", 5, 200, log=True, integer=True),
            Param("l2_regularization", 1e-3, 10.0, log=True),
        ),
    ),
    "hgb_ensemble": Family(
        "hgb_ensemble",
        CALENDAR,
        "five gradient-boosted tree models (seeds, half the features at each split) on "
        "distance, time of day, weekday or holiday, zones as categories; recent trips weigh more",
        _hgb_ensemble,
        {
            "n_models": 5,
            "learning_rate": 0.05,
            "max_iter": 3000,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 50,
            "l2_regularization": 1.0,
            "max_features": 0.5,
            "recency": 0.5,
        },
        (
            Param("recency", 0.0, 0.9),
            Param("min_samples_leaf", 20, 200, log=True, integer=True),
            Param("l2_regularization", 0.1, 10.0, log=True),
        ),
        _recent_first,
    ),
}

#: The family every comparison is made against.
BASELINE_FAMILY = "linear"


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"model family {name!r}: expected one of {', '.join(FAMILIES)}") from None


def build_model(family: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> Pipeline:
    chosen = get_family(family)
    return chosen.build({**chosen.defaults, **(params or {})}, seed)


def fit_model(
    family: str,
    params: Mapping[str, Any] | None,
    seed: int,
    X: Columns,
    y: np.ndarray,
) -> Pipeline:
    """:func:`build_model`, fitted the family's way (with its sample weights, if any)."""
    chosen = get_family(family)
    merged = {**chosen.defaults, **(params or {})}
    extra = chosen.fit_params(merged, X) if chosen.fit_params is not None else {}
    return chosen.build(merged, seed).fit(X, y, **extra)
