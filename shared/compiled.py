"""The serving hot path: a predictor compiled from a fitted Pipeline, proven equal to it.

A registered model stays an sklearn Pipeline (the artifact of record: MLflow keeps it, training
and evaluation use it). Scoring one ride through it costs milliseconds of per-call bookkeeping
(input validation, sparse matrices, the regressor's own checks) for microseconds of arithmetic.
When a service loads a model it also builds a compiled form of it:

- linear and ridge (:class:`TripFeaturizer` + a linear model): the prediction is the intercept
  plus one weight per category the ride falls in plus weight x number for the numerics, so each
  categorical column becomes a table of weights indexed by the raw value;
- gradient-boosted trees (:class:`TabularFeaturizer` + HistGradientBoostingRegressor, or a
  VotingRegressor averaging several, compiled one by one and averaged the same way): the
  featurizer's own numpy transform (no DataFrame, no validation; one ride in Python floats,
  ``TabularFeaturizer.transform_one``), then the trees as native code where a service gives a
  folder for it (shared/native_trees.py: TL2cgen's C, built by gcc once per version), else
  through Treelite's GTIL (``treelite.sklearn.import_model``, interpreted in the calling
  thread). Measured on an 80-tree hgb: one ride 0.011 ms native, 0.021 ms by GTIL, 1.5 ms by
  the Pipeline; 1,000 rides 2.3 ms native, 11 ms by GTIL, 6 ms by sklearn's own batch code.
  GTIL therefore hands batches above ``TREELITE_MAX_ROWS`` to the Pipeline itself, which is the
  answer of record anyway; native code keeps them. ONNX Runtime was the other candidate:
  skl2onnx 1.20 cannot convert HistGradientBoosting here (an attribute type error in onnx
  1.23), and its float32 thresholds could not meet the tolerance.

Before it serves, the compiled form is checked against the Pipeline on a probe batch that spans
zones (seen and unseen), distances and every hour of the week: if any answer differs by more
than ``TOLERANCE_MINUTES``, or the family has no compiled form, the Pipeline itself serves, and
:class:`ServingModel` says so (``/health``, the load log). It never serves a different answer.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor, VotingRegressor
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from shared.data.schema import DISTANCE, DO, PICKUP, PU
from shared.features import (
    Ride,
    TabularFeaturizer,
    TripFeaturizer,
    feature_columns,
    one_ride_values,
    ride_columns,
    table_lookup,
    table_value,
)
from shared.native_trees import NativeUnavailable, native_predictor

logger = logging.getLogger(__name__)

#: the largest difference (minutes) a compiled answer may have from the Pipeline's
TOLERANCE_MINUTES = 1e-6
#: of the probe rides, every how many is also scored alone (checks the one-ride paths)
ALONE_STRIDE = 4
#: above this many rides a batch is scored by the Pipeline (faster there; see above)
TREELITE_MAX_ROWS = 128
Columns = Mapping[str, np.ndarray]
OnePredictor = Callable[[Ride], float]


class NotCompilable(Exception):  # noqa: N818 - a verdict, caught where the fallback is chosen
    """This Pipeline has no compiled form (another family, or an unexpected shape)."""


@dataclass(frozen=True)
class ServingModel:
    """What a service scores with: the compiled predictor when it matched the Pipeline on the
    probe batch, else the Pipeline itself; ``engine`` says which, ``reason`` why."""

    predict: Callable[[Columns], np.ndarray]
    engine: str
    reason: str
    max_abs_diff: float | None
    #: one ride from its scalars (shared.features.Ride), proven on the probe as ``predict``
    #: is; None: one ride goes through ``predict`` as one-row columns
    predict_one: OnePredictor | None = None

    @property
    def compiled(self) -> bool:
        return self.engine != "sklearn"

    def one(self, ride: Ride) -> float:
        """One ride's answer: most requests carry one, and a compiled form scores it in
        Python floats, without the arrays that cost more than its arithmetic."""
        if self.predict_one is not None:
            return self.predict_one(ride)
        return float(self.predict(ride_columns(ride))[0])

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "reason": self.reason, "max_abs_diff": self.max_abs_diff}


def probe_rides(n: int = 512, seed: int = 20261204) -> dict[str, np.ndarray]:
    """Rides that reach every branch: zones 1..265 (including ones a month may never see),
    zero to long distances, every hour of every weekday at any second, a federal holiday."""
    rng = np.random.default_rng(seed)
    zones = np.arange(1, 266, dtype=np.float64)
    hours = np.arange(n) % 168
    start = np.datetime64("2019-02-04T00:00", "s")  # a Monday
    seconds = rng.integers(0, 3600, n)
    # the third week of hours two weeks on, so that it spans Presidents' Day (2019-02-18)
    later = np.where(np.arange(n) // 168 == 2, 14 * 24, 0)
    pickup = start + (hours + later) * np.timedelta64(3600, "s") + seconds * np.timedelta64(1, "s")
    return {
        PU: np.resize(zones, n),
        DO: rng.permutation(np.resize(zones, n)),
        DISTANCE: np.round(np.concatenate([[0.0, 0.01, 99.0], rng.gamma(1.5, 2.5, n - 3)]), 2),
        PICKUP: pickup.astype("datetime64[s]"),
    }


@dataclass(frozen=True)
class CompiledForm:
    """A Pipeline's compiled form: its engine, batches as columns, one ride from scalars."""

    engine: str
    predict: Callable[[Columns], np.ndarray]
    predict_one: OnePredictor


def _linear(pipeline: Pipeline) -> CompiledForm:
    featurizer, regressor = pipeline.named_steps["features"], pipeline.named_steps["regressor"]
    coef = np.asarray(regressor.coef_, dtype=np.float64).ravel()
    if coef.size != featurizer.n_features_out_:
        raise NotCompilable(f"{coef.size} weights for {featurizer.n_features_out_} features")
    intercept = float(np.asarray(regressor.intercept_).ravel()[0])
    # per categorical column: the weight of each raw value (0 for values not seen in training)
    tables = [
        np.where(lookup >= 0, coef[np.maximum(lookup, 0)], 0.0) for lookup in featurizer.lookups_
    ]
    base = featurizer.n_features_out_ - len(featurizer.numeric)
    weights = coef[base:]
    names = (*featurizer.categorical, *featurizer.numeric)

    per_value = [table.tolist() for table in tables]
    scalar_weights = weights.tolist()

    def predict(columns: Columns) -> np.ndarray:
        values = feature_columns(columns, names)
        total = np.full(len(columns[PU]), intercept)
        for column, table in zip(values[: len(tables)], tables, strict=True):
            total += table_lookup(column, table, 0.0)
        for column, weight in zip(values[len(tables) :], weights, strict=True):
            total += weight * column
        return total

    def predict_one(ride: Ride) -> float:
        values = one_ride_values(ride, names)
        if values is None:  # a pickup time the scalar path does not read: the array path
            return float(predict(ride_columns(ride))[0])
        return _one_ride(values, intercept, per_value, scalar_weights)

    return CompiledForm("linear", predict, predict_one)


def _one_ride(
    values: list[float], intercept: float, tables: list[list[float]], weights: list[float]
) -> float:
    """One ride's linear prediction in Python floats: the additions of the array path, in its
    order (IEEE doubles either way, so the same bits), without numpy's per-call cost (a third
    of a one-ride request at level 1)."""
    total = intercept
    for value, table in zip(values[: len(tables)], tables, strict=True):
        total += table_value(value, table, 0.0)
    for value, weight in zip(values[len(tables) :], weights, strict=True):
        total += weight * value
    return total


def _known_categories(regressor: HistGradientBoostingRegressor) -> list[tuple[int, np.ndarray]]:
    """Per categorical column, a table over its codes: True where the trees know the category.

    HistGradientBoosting sends a category it did not see in training down the missing-value
    branch; Treelite's import sends it down the "not in the split's set" branch. Codes the
    trees do not know are therefore made missing (NaN) before Treelite sees them."""
    preprocessor = getattr(regressor, "_preprocessor", None)
    flags = getattr(regressor, "is_categorical_", None)
    columns = np.flatnonzero(flags) if flags is not None else np.array([], dtype=np.int64)
    if preprocessor is None or not columns.size:
        if columns.size:
            raise NotCompilable("the trees' known categories are not where sklearn keeps them")
        return []
    encoder = preprocessor.named_transformers_.get("encoder")
    categories = getattr(encoder, "categories_", None)
    if categories is None or len(categories) != columns.size:
        raise NotCompilable("the trees' known categories are not where sklearn keeps them")
    tables = []
    for column, known in zip(columns, categories, strict=True):
        codes = np.asarray(known, dtype=np.float64)
        codes = codes[np.isfinite(codes)].astype(np.int64)
        table = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=bool)
        table[codes] = True
        tables.append((int(column), table))
    return tables


def _tree_members(regressor: Any) -> list[HistGradientBoostingRegressor]:
    """The boosted-tree models whose mean is the answer: the regressor itself, or each member
    of a VotingRegressor without weights (the ``hgb_ensemble`` family)."""
    if isinstance(regressor, HistGradientBoostingRegressor):
        return [regressor]
    members = list(getattr(regressor, "estimators_", []))
    if getattr(regressor, "weights", None) is not None or not members:
        raise NotCompilable("a weighted or unfitted VotingRegressor")
    if not all(isinstance(m, HistGradientBoostingRegressor) for m in members):
        raise NotCompilable("a VotingRegressor with members other than boosted trees")
    return members


@dataclass(frozen=True)
class _Member:
    known: list[tuple[int, np.ndarray]]
    #: ``known`` as bytes: members fitted on the same rows know the same categories, and the
    #: features are masked once for all of them
    key: tuple[tuple[int, bytes], ...]
    trees: Callable[[np.ndarray], np.ndarray]
    #: built into a native library (shared/native_trees.py), not interpreted by GTIL
    native: bool
    #: one row of Python floats, without arrays (the native library's one-row entry)
    one: Callable[[list[float]], float] | None = None


def _member(regressor: HistGradientBoostingRegressor, native_dir: Path | None) -> _Member:
    import treelite
    import treelite.sklearn

    known = _known_categories(regressor)
    try:
        model = treelite.sklearn.import_model(regressor)
    except Exception as exc:  # treelite names what it cannot import; that is the reason
        raise NotCompilable(f"treelite cannot import it: {exc}") from None
    key = tuple((c, t.tobytes()) for c, t in known)
    if native_dir is not None:
        try:
            trees = native_predictor(model, native_dir)
            return _Member(known, key, trees, native=True, one=trees.one)
        except NativeUnavailable as exc:
            logger.warning("trees through Treelite's GTIL, not native code: %s", exc)
    return _Member(known, key, _gtil(model), native=False)


def _unknown_as_missing(features: np.ndarray, known: list[tuple[int, np.ndarray]]) -> np.ndarray:
    if not known:
        return features
    features = features.copy()
    for column, table in known:
        codes = features[:, column]
        codes[~table_lookup(codes, table, False)] = np.nan
    return features


def _gtil(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Treelite's GTIL on a float64 matrix, one thread (gunicorn's workers and their threads
    are the parallelism). ``treelite.gtil.predict`` parses a JSON configuration and asks for
    the output shape on every call: 25 of its 33 us for one ride. Here the configuration is
    parsed once and the C function called directly; where that entry point is not found (a
    Treelite other than 4.x), the public function serves. Either way the probe batch proves
    the answers before they serve."""
    import treelite.gtil

    def public(features: np.ndarray) -> np.ndarray:
        return np.asarray(treelite.gtil.predict(model, features, nthread=1)).ravel()

    try:
        from treelite.core import _LIB, _check_call  # the C API's functions
        from treelite.gtil.gtil import GTILConfig
        from treelite.util import c_str
    except ImportError:
        return public
    if (model.input_type, model.output_type) != ("float64", "float64"):
        return public
    config = GTILConfig(nthread=1, predict_type="default")
    shape, ndim = ctypes.POINTER(ctypes.c_uint64)(), ctypes.c_uint64()
    _check_call(
        _LIB.TreeliteGTILGetOutputShape(
            model.handle, ctypes.c_uint64(1), config.handle, ctypes.byref(shape), ctypes.byref(ndim)
        )
    )
    if [int(shape[i]) for i in range(ndim.value)] != [1] * ndim.value:
        return public  # one answer a row is all the buffer below has room for
    entry, input_type = _LIB.TreeliteGTILPredict, c_str("float64")
    width = int(model.num_feature)
    as_double = ctypes.POINTER(ctypes.c_double)

    def direct(features: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != width:
            return public(features)
        out = np.empty(rows.shape[0], dtype=np.float64)  # (rows, 1 target, 1 class)
        _check_call(
            entry(
                model.handle,
                rows.ctypes.data_as(as_double),
                input_type,
                ctypes.c_uint64(rows.shape[0]),
                out.ctypes.data_as(as_double),
                config.handle,
            )
        )
        return out

    return direct


def _trees(pipeline: Pipeline, native_dir: Path | None) -> CompiledForm:
    featurizer = pipeline.named_steps["features"]
    regressor = pipeline.named_steps["regressor"]
    members = [_member(m, native_dir) for m in _tree_members(regressor)]
    engine = "native" if all(m.native for m in members) else "treelite"

    def predict(columns: Columns) -> np.ndarray:
        features = np.ascontiguousarray(featurizer.transform(columns), dtype=np.float64)
        return _mean_of_members(members, lambda m: _unknown_as_missing(features, m.known))

    scalar = all(m.one is not None for m in members)

    def predict_one(ride: Ride) -> float:
        row = featurizer.transform_one(ride)
        if row is None:  # a pickup time the scalar path does not read: the array path
            return float(predict(ride_columns(ride))[0])
        # its features as Python floats, masked as the array path masks them
        if scalar:
            masked = _mean_of_members(members, lambda m: _masked_row(row, m.known), _one_row)
            return float(masked[0])
        return float(_mean_of_members(members, lambda m: np.array([_masked_row(row, m.known)]))[0])

    return CompiledForm(engine, predict, predict_one)


def _rows(member: _Member, features: Any) -> Any:
    return member.trees(features)


def _one_row(member: _Member, features: Any) -> Any:
    # one answer in a list: an ensemble's mean is then taken as for the batch entry's arrays
    return [member.one(features)]  # type: ignore[misc]  # only when every member has one


def _mean_of_members(
    members: list[_Member],
    features_for: Callable[[_Member], Any],
    score: Callable[[_Member, Any], Any] = _rows,
) -> Any:
    """The members' mean answer (VotingRegressor's), each on its features with the categories
    it does not know made missing: computed once for members that know the same ones.
    ``score``: a member's answers on its features (its batch entry, or its one-row entry)."""
    masked: dict[tuple[tuple[int, bytes], ...], Any] = {}
    answers = []
    for member in members:
        if member.key not in masked:
            masked[member.key] = features_for(member)
        answers.append(score(member, masked[member.key]))
    return answers[0] if len(answers) == 1 else np.mean(answers, axis=0)


def _masked_row(row: list[float], known: list[tuple[int, np.ndarray]]) -> list[float]:
    """:func:`_unknown_as_missing` of one row of Python floats (table_lookup's rule)."""
    if not known:
        return row
    row = list(row)
    for column, table in known:
        if not table_value(row[column], table, False):
            row[column] = math.nan
    return row


def compile_pipeline(pipeline: Any, native_dir: Path | None = None) -> CompiledForm:
    """The compiled form of a fitted Pipeline and its engine's name, or NotCompilable.
    ``native_dir``: where boosted trees are built into native code (kept there for the next
    load); None interprets them with Treelite's GTIL."""
    steps = getattr(pipeline, "named_steps", None)
    if steps is None or set(steps) != {"features", "regressor"}:
        raise NotCompilable(f"not a features + regressor Pipeline ({type(pipeline).__name__})")
    featurizer, regressor = steps["features"], steps["regressor"]
    if isinstance(featurizer, TripFeaturizer) and type(regressor) in (LinearRegression, Ridge):
        return _linear(pipeline)
    if isinstance(featurizer, TabularFeaturizer) and isinstance(
        regressor, HistGradientBoostingRegressor | VotingRegressor
    ):
        return _trees(pipeline, native_dir)
    raise NotCompilable(
        f"no compiled form for {type(featurizer).__name__} + {type(regressor).__name__}"
    )


def serving_model(
    pipeline: Any,
    probe: Columns | None = None,
    tolerance: float = TOLERANCE_MINUTES,
    *,
    compile_it: bool = True,
    native_dir: Path | None = None,
) -> ServingModel:
    """The fastest way to score with ``pipeline`` that gives its answers (within
    ``tolerance`` minutes on ``probe``); the Pipeline itself when there is none, or when
    ``compile_it`` is False (TAXI_MLOPS_SERVING_ENGINE=sklearn)."""
    probe = probe if probe is not None else probe_rides()

    def by_sklearn(reason: str, diff: float | None = None) -> ServingModel:
        logger.warning("serving through sklearn: %s", reason)
        return ServingModel(pipeline.predict, "sklearn", reason, diff)

    if not compile_it:
        return by_sklearn("compilation is off (TAXI_MLOPS_SERVING_ENGINE=sklearn)")
    try:
        form = compile_pipeline(pipeline, native_dir)
    except NotCompilable as exc:
        return by_sklearn(str(exc))
    engine, predict = form.engine, form.predict
    batch = np.asarray(pipeline.predict(probe), dtype=np.float64)
    expected = np.concatenate([batch, batch[::ALONE_STRIDE]])
    try:
        got = np.concatenate([predict(probe), _scored_alone(form.predict_one, probe)])
    except Exception as exc:  # a compiled form that cannot even score the probe is not used
        return by_sklearn(f"{engine} failed on the probe batch: {type(exc).__name__}: {exc}")
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        return by_sklearn(f"{engine} gave {got.shape} answers for {expected.shape}")
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= tolerance:
        return by_sklearn(
            f"{engine} differs from the Pipeline by {diff:.3g} min on the probe batch "
            f"(tolerance {tolerance:g})",
            diff,
        )
    logger.info("compiled predictor: %s (max difference %.2g min on the probe)", engine, diff)
    reason = f"{engine}, equal to the Pipeline within {tolerance:g} on {len(batch)} rides"
    if engine == "treelite":  # native trees score a batch faster than sklearn: they keep it
        predict = _by_batch_size(predict, pipeline.predict, TREELITE_MAX_ROWS)
        reason += f"; batches above {TREELITE_MAX_ROWS} rides through the Pipeline"
    return ServingModel(predict, engine, reason, diff, form.predict_one)


def _scored_alone(predict_one: OnePredictor, probe: Columns) -> np.ndarray:
    """Every ``ALONE_STRIDE``-th probe ride scored on its own, from its scalars: a one-ride
    request takes a path of its own in the compiled forms, which must prove itself too."""
    rows = range(0, len(probe[PU]), ALONE_STRIDE)
    return np.array([predict_one({k: v[i] for k, v in probe.items()}) for i in rows])


def _by_batch_size(
    small: Callable[[Columns], np.ndarray], large: Callable[[Columns], Any], limit: int
) -> Callable[[Columns], np.ndarray]:
    def predict(columns: Columns) -> np.ndarray:
        if len(columns[PU]) <= limit:
            return small(columns)
        return np.asarray(large(columns), dtype=np.float64)

    return predict
