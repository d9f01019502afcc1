"""Hyperparameter search per model family (Optuna TPE), as a pure function.

Each trial fits a family's Pipeline on the training months and scores it on the validation
month, as the course does. The first trial of every family is its default parameters, so a
search never ends worse than the defaults. Same data + seed -> same trials, same winner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.pipeline import Pipeline

from shared.evaluate import regression_metrics
from shared.models import Param, fit_model, get_family

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _suggest(trial: optuna.Trial, param: Param) -> float | int:
    if param.integer:
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=param.log)
    return trial.suggest_float(param.name, param.low, param.high, log=param.log)


def _space(family: str, trial: optuna.Trial) -> dict[str, Any]:
    """One trial's parameters: the family's search space (shared/models.py), sampled."""
    return {param.name: _suggest(trial, param) for param in get_family(family).search}


def searchable(family: str) -> bool:
    return bool(get_family(family).search)


@dataclass
class TrialResult:
    family: str
    number: int
    params: dict[str, Any]
    val_metrics: dict[str, float]
    train_metrics: dict[str, float]
    fit_seconds: float
    #: the fitted model; None where a result was read back from its record (a Kubeflow step
    #: reads the others' results from their artifacts, and their models from MLflow)
    pipeline: Pipeline | None = field(repr=False)

    @property
    def val_rmse(self) -> float:
        return self.val_metrics["rmse"]

    @property
    def fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise ValueError(f"{self.family} trial {self.number}: its model was not kept")
        return self.pipeline


def fit_and_score(
    family: str,
    params: Mapping[str, Any],
    seed: int,
    train: tuple[pd.DataFrame, np.ndarray],
    val: tuple[pd.DataFrame, np.ndarray],
    number: int = 0,
) -> TrialResult:
    started = time.perf_counter()
    pipeline = fit_model(family, params, seed, *train)
    fit_seconds = time.perf_counter() - started
    return TrialResult(
        family=family,
        number=number,
        params={**get_family(family).defaults, **params},
        val_metrics=regression_metrics(val[1], pipeline.predict(val[0])),
        train_metrics=regression_metrics(train[1], pipeline.predict(train[0])),
        fit_seconds=fit_seconds,
        pipeline=pipeline,
    )


def search_family(
    family: str,
    train: tuple[pd.DataFrame, np.ndarray],
    val: tuple[pd.DataFrame, np.ndarray],
    *,
    trials: int,
    seed: int,
    on_trial: Callable[[TrialResult], None] = lambda result: None,
) -> TrialResult:
    """Run up to ``trials`` trials (one for families with nothing to search); return the best.

    ``on_trial`` sees every trial as it finishes (the flow logs each to MLflow there).
    """
    defaults = dict(get_family(family).defaults)
    if not searchable(family) or trials <= 1:
        result = fit_and_score(family, defaults, seed, train, val)
        on_trial(result)
        return result

    results: list[TrialResult] = []
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    searched = {param.name for param in get_family(family).search}
    study.enqueue_trial({k: v for k, v in defaults.items() if k in searched})

    def objective(trial: optuna.Trial) -> float:
        result = fit_and_score(family, _space(family, trial), seed, train, val, trial.number)
        results.append(result)
        on_trial(result)
        logger.info("%s trial %d: val RMSE %.4f", family, trial.number, result.val_rmse)
        return result.val_rmse

    study.optimize(objective, n_trials=trials)
    # Ties go to the earlier trial, so the winner does not depend on float noise in ordering.
    return min(results, key=lambda r: (round(r.val_rmse, 9), r.number))
