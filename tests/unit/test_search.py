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
