"""The compiled predictors (shared/compiled.py) give the Pipeline's answers, on generated and
real months, for every family; where they cannot, or would not, the Pipeline serves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor

import shared.compiled as compiled
from shared.data.generator import generate_month
from shared.data.load import load_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import DAY_TYPE, HOLIDAY, TabularFeaturizer, feature_column, split_xy
from shared.models import FAMILIES, fit_model, get_family
from tests.conftest import REAL_DATA

FAMILY_NAMES = sorted(FAMILIES)
#: the engine each family is served by once its compiled form is proven equal
ENGINES = {"linear": "linear", "ridge": "linear", "hgb": "treelite", "hgb_ensemble": "treelite"}
TREE_FAMILIES = [f for f in FAMILY_NAMES if ENGINES[f] == "treelite"]


def engine_of(family: str, native: bool) -> str:
    return "native" if native and ENGINES[family] == "treelite" else ENGINES[family]


def columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: frame[name].to_numpy() for name in frame.columns}


#: (family, id of the training frame) -> (that frame, the model fitted on it)
_FITTED: dict[tuple[str, int], tuple[pd.DataFrame, Pipeline]] = {}


def fitted(family: str, train: pd.DataFrame) -> Pipeline:
    """The family fitted on ``train``: fitted once per module-scoped frame (an ensemble on a real
    month takes seconds), and a copy each time, since some tests tamper with their model."""
    key = (family, id(train))
    if key not in _FITTED or _FITTED[key][0] is not train:
        X, y = split_xy(train, get_family(family).spec)
        _FITTED[key] = (train, fit_model(family, None, 0, X, y))
    return copy.deepcopy(_FITTED[key][1])


def assert_same_answers(
    model: Pipeline, rides: pd.DataFrame, native_dir: Path | None = None
) -> compiled.ServingModel:
    served = compiled.serving_model(model, native_dir=native_dir)
    expected = model.predict(rides)
    for size in (1, 7, compiled.TREELITE_MAX_ROWS, len(rides)):  # each engine's batch sizes
        chunk = rides.iloc[:size]
        got = served.predict(columns(chunk))
        np.testing.assert_allclose(got, expected[:size], rtol=0, atol=compiled.TOLERANCE_MINUTES)
    # a one-ride request: from the ride's scalars (ServingModel.one)
    first = columns(rides.iloc[:16])
    alone = [served.one({k: v[i] for k, v in first.items()}) for i in range(len(rides.iloc[:16]))]
    np.testing.assert_allclose(alone, expected[:16], rtol=0, atol=compiled.TOLERANCE_MINUTES)
    return served


@pytest.fixture(scope="module")
def generated() -> tuple[pd.DataFrame, pd.DataFrame]:
    months = []
    for month, seed in (("2019-01", 1), ("2019-02", 2)):
        clean, _ = clean_trips(
            to_canonical(generate_month(month, 6000, seed=seed), "g"), ValidationBounds()
        )
        months.append(clean)
    return months[0], months[1]


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of native libraries for the module (a model is built once)."""
    return tmp_path_factory.mktemp("native-trees")


@pytest.mark.parametrize("native", [False, True], ids=["gtil", "native"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_compiles_to_the_pipelines_answers_on_generated_months(
    family: str, native: bool, generated: tuple[pd.DataFrame, pd.DataFrame], native_dir: Path
) -> None:
    train, later = generated
    model = fitted(family, train)
    rides = split_xy(later, get_family(family).spec)[0]
    served = assert_same_answers(model, rides, native_dir if native else None)
    assert served.compiled and served.engine == engine_of(family, native), served.reason
    assert served.max_abs_diff is not None and served.max_abs_diff <= compiled.TOLERANCE_MINUTES


@pytest.fixture(scope="module")
def real_months() -> tuple[pd.DataFrame, pd.DataFrame]:
    if not REAL_DATA.exists():
        pytest.skip(f"real TLC samples not found at {REAL_DATA} (see ../shared/data/README)")
    bounds = ValidationBounds()
    frames = []
    for month in ("2019-01", "2020-02"):
        loaded = load_month(REAL_DATA, month)
        frames.append(clean_trips(loaded.frame, bounds, month=month, source=loaded.source)[0])
    return frames[0], frames[1]


@pytest.mark.realdata
@pytest.mark.parametrize("native", [False, True], ids=["gtil", "native"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_compiles_to_the_pipelines_answers_on_real_months(
    family: str, native: bool, real_months: tuple[pd.DataFrame, pd.DataFrame], native_dir: Path
) -> None:
    """Trained on 2019-01, scored on 2020-02: a year later, zones and hours the training month
    never saw included."""
    train, later = real_months
    model = fitted(family, train)
    rides = split_xy(later, get_family(family).spec)[0]
    served = assert_same_answers(model, rides, native_dir if native else None)
    assert served.engine == engine_of(family, native), served.reason


def test_a_category_the_trees_never_saw_takes_their_missing_branch_as_in_sklearn(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """Treelite alone sends an unknown category down another branch than sklearn (2 minutes
    apart on real data); the compiled form makes it missing first."""
    train, _ = generated
    model = fitted("hgb", train)
    featurizer: TabularFeaturizer = model.named_steps["features"]
    rides = compiled.probe_rides(64)
    # a pickup zone as rare as can be: the featurizer's "other" code, unseen in training
    rides["PULocationID"] = np.full(64, 999.0)
    codes = featurizer.transform(rides)[:, featurizer.categorical_indices()[0]]
    assert set(codes) == {float(featurizer.max_categories)}
    served = compiled.serving_model(model)
    np.testing.assert_allclose(served.predict(rides), model.predict(rides), atol=1e-6, rtol=0)
    one = served.one({k: v[0] for k, v in rides.items()})  # the one-ride path masks too
    np.testing.assert_allclose(one, model.predict(rides)[0], atol=1e-6, rtol=0)


def test_a_family_without_a_compiled_form_is_served_by_its_pipeline(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, _ = generated
    featurizer = TabularFeaturizer()
    model = Pipeline([("features", featurizer), ("regressor", DecisionTreeRegressor())])
    model.fit(*split_xy(train, get_family("hgb").spec))
    served = compiled.serving_model(model)
    assert (served.engine, served.compiled) == ("sklearn", False)
    assert "no compiled form for TabularFeaturizer + DecisionTreeRegressor" in served.reason
    rides = compiled.probe_rides(16)
    np.testing.assert_array_equal(served.predict(rides), model.predict(rides))


def test_a_compiled_form_that_disagrees_never_serves(
    generated: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train, _ = generated
    model = fitted("ridge", train)
    honest = compiled._linear

    def off_by_a_little(pipeline: Pipeline):  # a compiler bug: 0.01 s on every batch answer
        form = honest(pipeline)
        return compiled.CompiledForm(
            form.engine, lambda columns: form.predict(columns) + 1e-4, form.predict_one
        )

    monkeypatch.setattr(compiled, "_linear", off_by_a_little)
    served = compiled.serving_model(model)
    assert served.engine == "sklearn"
    assert "linear differs from the Pipeline by 0.0001 min" in served.reason
    assert "serving through sklearn" in caplog.text
    rides = compiled.probe_rides(32)
    np.testing.assert_array_equal(served.predict(rides), model.predict(rides))


def test_a_compiled_form_that_fails_on_the_probe_is_not_used(
    generated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fitted("linear", generated[0])

    def broken(pipeline: Pipeline):
        def predict(columns):
            raise IndexError("index 300 is out of bounds")

        return compiled.CompiledForm("linear", predict, lambda ride: 1.0)

    monkeypatch.setattr(compiled, "_linear", broken)
    served = compiled.serving_model(model)
    assert served.engine == "sklearn" and "IndexError: index 300" in served.reason


def test_big_batches_of_trees_go_to_the_pipeline(
    generated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fitted("hgb", generated[0])
    calls: list[int] = []
    original = Pipeline.predict
    monkeypatch.setattr(
        Pipeline,
        "predict",
        lambda self, X: calls.append(len(X["PULocationID"])) or original(self, X),
    )
    served = compiled.serving_model(model)
    calls.clear()  # the probe check's own call
    served.predict(compiled.probe_rides(compiled.TREELITE_MAX_ROWS))
    assert calls == []
    served.predict(compiled.probe_rides(compiled.TREELITE_MAX_ROWS + 1))
    assert calls == [compiled.TREELITE_MAX_ROWS + 1]


def test_the_probe_reaches_every_zone_and_hour_of_the_week() -> None:
    rides = compiled.probe_rides()
    assert set(rides["PULocationID"]) == set(range(1, 266))
    hours = (rides["pickup_datetime"].astype("datetime64[h]").astype(np.int64)) % 168
    assert len(set(hours)) == 168
    assert rides["trip_distance"].min() == 0.0 and rides["trip_distance"].max() >= 99
    day_types = feature_column(rides, DAY_TYPE)
    assert set(day_types) == {*range(7), HOLIDAY}  # Presidents' Day, for the ensemble


def test_an_ensemble_averaged_with_weights_is_served_by_its_pipeline(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The compiled form averages its members equally: a weighted vote is not that model."""
    model = fitted("hgb_ensemble", generated[0])
    model.named_steps["regressor"].weights = [3, 1, 1, 1, 1]
    served = compiled.serving_model(model)
    assert served.engine == "sklearn" and "a weighted or unfitted VotingRegressor" in served.reason
    rides = compiled.probe_rides(16)
    np.testing.assert_array_equal(served.predict(rides), model.predict(rides))


def test_no_treelite_model_file_is_written(tmp_path: Path, monkeypatch, generated) -> None:
    """Compiling is in memory: a read-only container (ECS) has nowhere else to put it."""
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    compiled.serving_model(fitted("hgb", generated[0]))
    assert sorted(tmp_path.rglob("*")) == before


def test_a_one_ride_path_that_disagrees_never_serves(
    generated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One ride takes a path of its own (Python floats): the probe scores rides alone too."""
    model = fitted("linear", generated[0])
    honest = compiled._one_ride
    monkeypatch.setattr(compiled, "_one_ride", lambda *args: honest(*args) + 1e-4)
    served = compiled.serving_model(model)
    assert served.engine == "sklearn" and "differs from the Pipeline by 0.0001" in served.reason


def test_a_one_ride_tree_path_that_disagrees_never_serves(
    generated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiled trees featurize one ride in Python floats (TabularFeaturizer.transform_one)."""
    model = fitted("hgb", generated[0])
    honest = TabularFeaturizer.transform_one

    def shifted(self: TabularFeaturizer, X: Any) -> list[float] | None:
        row = honest(self, X)
        return None if row is None else [row[0] + 5.0, *row[1:]]  # 5 more miles

    monkeypatch.setattr(TabularFeaturizer, "transform_one", shifted)
    served = compiled.serving_model(model)
    assert served.engine == "sklearn" and "differs from the Pipeline" in served.reason


def test_a_one_ride_linear_path_that_disagrees_never_serves(
    generated: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The linear one-ride path adds weights in Python floats (compiled._one_ride)."""
    model = fitted("linear", generated[0])
    honest = compiled._one_ride
    monkeypatch.setattr(compiled, "_one_ride", lambda *args: honest(*args) + 0.01)
    served = compiled.serving_model(model)
    assert served.engine == "sklearn" and "differs from the Pipeline" in served.reason
    ride = {k: v[0] for k, v in compiled.probe_rides(4).items()}
    assert served.one(ride) == model.predict(compiled.probe_rides(4))[0]


def test_one_ride_alone_gets_the_bits_of_the_batch(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    for family in ("linear", "ridge", "hgb"):
        served = compiled.serving_model(fitted(family, generated[0]))
        assert served.compiled
        rides = compiled.probe_rides(64)
        alone = [served.one({k: v[i] for k, v in rides.items()}) for i in range(64)]
        np.testing.assert_array_equal(alone, served.predict(rides))
        rows = [served.predict({k: v[i : i + 1] for k, v in rides.items()}) for i in range(64)]
        np.testing.assert_array_equal(np.concatenate(rows), alone)  # a batch of one, too


def test_gtil_is_called_directly_and_answers_as_treelite_does(
    generated: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    import treelite.gtil
    import treelite.sklearn

    model = fitted("hgb", generated[0])
    trees = treelite.sklearn.import_model(model.named_steps["regressor"])
    direct = compiled._gtil(trees)
    assert direct.__name__ == "direct"  # Treelite 4.x: its C entry point, found
    features = model.named_steps["features"].transform(compiled.probe_rides())
    for rows in (features[:1], features):
        np.testing.assert_array_equal(
            direct(rows), treelite.gtil.predict(trees, rows, nthread=1).ravel()
        )


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_native_trees_answer_with_gtils_bits_in_batches_and_alone(
    family: str, generated: tuple[pd.DataFrame, pd.DataFrame], native_dir: Path
) -> None:
    model = fitted(family, generated[0])
    native = compiled.serving_model(model, native_dir=native_dir)
    gtil = compiled.serving_model(model)
    rides = compiled.probe_rides(100)
    assert native.engine == "native" and gtil.engine == "treelite"
    np.testing.assert_array_equal(native.predict(rides), gtil.predict(rides))
    alone = [native.one({k: v[i] for k, v in rides.items()}) for i in range(100)]
    np.testing.assert_array_equal(alone, native.predict(rides))


def test_the_native_one_row_entry_gives_the_batch_entrys_bits_and_checks_its_width(
    generated: tuple[pd.DataFrame, pd.DataFrame], native_dir: Path
) -> None:
    import treelite.sklearn

    import shared.native_trees as native_trees

    model = fitted("hgb", generated[0])
    trees = native_trees.native_predictor(
        treelite.sklearn.import_model(model.named_steps["regressor"]), native_dir
    )
    features = model.named_steps["features"].transform(compiled.probe_rides(64))
    features[::5, 0] = np.nan  # missing values take the trees' missing branches on both paths
    alone = [trees.one(row.tolist()) for row in features]
    np.testing.assert_array_equal(alone, trees(features))
    with pytest.raises(ValueError, match=f"a row of {trees.width} features, got 2"):
        trees.one([1.0, 2.0])


def test_one_native_ride_is_scored_without_the_batch_entry(
    generated: tuple[pd.DataFrame, pd.DataFrame], native_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.native_trees as native_trees

    served = compiled.serving_model(fitted("hgb_ensemble", generated[0]), native_dir=native_dir)
    rides = compiled.probe_rides(8)
    batch = served.predict(rides)

    def no_arrays(self: Any, features: np.ndarray) -> np.ndarray:
        raise AssertionError("a one-ride answer went through the batch entry")

    monkeypatch.setattr(native_trees.NativeTrees, "__call__", no_arrays)
    alone = [served.one({k: v[i] for k, v in rides.items()}) for i in range(8)]
    np.testing.assert_array_equal(alone, batch)


def test_a_native_library_is_built_once_per_model_and_reused(
    generated: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.native_trees as native_trees

    builds: list[Path] = []
    build = native_trees._build
    monkeypatch.setattr(
        native_trees,
        "_build",
        lambda model, cc, library: (builds.append(library), build(model, cc, library)),
    )
    model = fitted("hgb", generated[0])
    for _ in range(2):  # a second load of the version (another worker, a restart)
        assert compiled.serving_model(model, native_dir=tmp_path).engine == "native"
    assert len(builds) == 1 and builds[0].exists()
    assert [p.suffix for p in tmp_path.glob("trees-*.so")] == [".so"]


def test_without_a_compiler_trees_are_interpreted_and_the_load_log_says_why(
    generated: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import shared.native_trees as native_trees

    monkeypatch.setattr(native_trees, "compiler", lambda: None)
    served = compiled.serving_model(fitted("hgb", generated[0]), native_dir=tmp_path)
    assert served.engine == "treelite", served.reason
    assert "no C compiler" in caplog.text and not list(tmp_path.glob("*.so"))


def test_a_failed_build_leaves_no_library_and_the_trees_interpreted(
    generated: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.native_trees as native_trees

    monkeypatch.setattr(native_trees, "OPTIMISATION", "--no-such-flag")
    served = compiled.serving_model(fitted("hgb", generated[0]), native_dir=tmp_path)
    assert served.engine == "treelite" and not list(tmp_path.glob("*.so"))


def test_native_trees_that_disagree_never_serve(
    generated: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest = compiled.native_predictor

    class OffByASecond:  # both entry points, batch and one row
        def __init__(self, trees: Any) -> None:
            self.trees = trees

        def __call__(self, features: np.ndarray) -> np.ndarray:
            return self.trees(features) + 1 / 60

        def one(self, row: list[float]) -> float:
            return self.trees.one(row) + 1 / 60

    def off_by_a_second(model: Any, cache_dir: Path) -> Any:
        return OffByASecond(honest(model, cache_dir))

    monkeypatch.setattr(compiled, "native_predictor", off_by_a_second)
    served = compiled.serving_model(fitted("hgb", generated[0]), native_dir=tmp_path)
    assert served.engine == "sklearn" and "native differs from the Pipeline" in served.reason
