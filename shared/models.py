"""Model families: how to build each kind of model (features + estimator) from parameters.

Every level builds its models here. Level 1 uses the course's ``linear`` family; level 2 searches
the others' parameters. A family's Pipeline carries its own featurization, so a registered model
is served without any feature code outside the artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from shared.errors import ConfigError
from shared.features import (
    BASELINE,
    RICH,
    RICH_ONE_HOT,
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


def _linear(params: Mapping[str, Any], seed: int) -> Pipeline:
    return build_pipeline(BASELINE, LinearRegression())


def _ridge(params: Mapping[str, Any], seed: int) -> Pipeline:
    return build_pipeline(RICH_ONE_HOT, Ridge(alpha=float(params["alpha"])))


def _hgb(params: Mapping[str, Any], seed: int) -> Pipeline:
    featurizer = TabularFeaturizer(RICH.categorical, RICH.numeric, RICH.time)
    regressor = HistGradientBoostingRegressor(
        learning_rate=float(params["learning_rate"]),
        max_iter=int(params["max_iter"]),
        max_leaf_nodes=int(params["max_leaf_nodes"]),
        min_samples_leaf=int(params["min_samples_leaf"]),
        l2_regularization=float(params["l2_regularization"]),
        categorical_features=featurizer.categorical_indices(),
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=seed,
    )
    return Pipeline([("features", featurizer), ("regressor", regressor)])


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
