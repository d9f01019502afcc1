from __future__ import annotations

import pytest

from level2_training.search import search_family
from shared.data.generator import generate_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import split_xy
from shared.models import FAMILIES, get_family


@pytest.fixture(scope="module")
def data():
    frames = [
        clean_trips(to_canonical(generate_month(m, 4000, seed=i), "g"), ValidationBounds())[0]
        for i, m in enumerate(["2019-01", "2019-02"])
    ]
    return {
        f: (split_xy(frames[0], get_family(f).spec), split_xy(frames[1], get_family(f).spec))
        for f in FAMILIES
    }


@pytest.mark.parametrize("family", ["ridge", "hgb"])
def test_same_seed_same_search(data, family: str) -> None:
    seen: list[int] = []
    a = search_family(
        family, *data[family], trials=4, seed=3, on_trial=lambda r: seen.append(r.number)
    )
    b = search_family(family, *data[family], trials=4, seed=3)
    assert (a.params, a.val_rmse) == (b.params, b.val_rmse)
    assert seen == [0, 1, 2, 3]


def test_search_never_ends_worse_than_the_defaults(data) -> None:
    trials = []
    best = search_family("hgb", *data["hgb"], trials=3, seed=0, on_trial=trials.append)
    defaults = get_family("hgb").defaults
    assert {k: trials[0].params[k] for k in defaults} == dict(defaults)
    assert best.val_rmse <= trials[0].val_rmse


def test_linear_is_one_trial(data) -> None:
    trials = []
    search_family("linear", *data["linear"], trials=10, seed=0, on_trial=trials.append)
    assert len(trials) == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # few iterations
def test_a_family_defined_only_in_shared_models_is_searched(data, monkeypatch) -> None:
    """The search space lives with the family: a new family with a ``search`` is searched over
    it, with no line of level2_training/ about it, and its unsearched parameters stay fixed."""
    from sklearn.linear_model import Lasso

    from shared.features import RICH_ONE_HOT, build_pipeline
    from shared.models import Family, Param

    def lasso(params, seed):  # type: ignore[no-untyped-def]
        model = Lasso(alpha=float(params["alpha"]), max_iter=int(params["max_iter"]))
        return build_pipeline(RICH_ONE_HOT, model)

    family = Family(
        "lasso",
        RICH_ONE_HOT,
        "a family this test adds",
        lasso,
        {"alpha": 0.01, "max_iter": 300},
        (Param("alpha", 1e-4, 1.0, log=True),),
    )
    monkeypatch.setitem(FAMILIES, "lasso", family)
    trials = []
    search_family("lasso", *data["ridge"], trials=4, seed=1, on_trial=trials.append)
    assert len(trials) == 4
    assert trials[0].params == {"alpha": 0.01, "max_iter": 300}  # the defaults first
    alphas = {t.params["alpha"] for t in trials}
    assert len(alphas) == 4 and all(1e-4 <= a <= 1.0 for a in alphas)
    assert {t.params["max_iter"] for t in trials} == {300}
