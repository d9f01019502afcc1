"""Model families (shared/models.py): the ensemble's recency weights and how it is fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.errors import ConfigError
from shared.family_names import FAMILY_NAMES
from shared.features import split_xy
from shared.models import FAMILIES, fit_model, get_family, recency_weights


def test_recency_weights_rise_linearly_from_the_oldest_to_the_newest_trip() -> None:
    pickup = pd.Series(pd.to_datetime(["2019-01-01", "2019-03-01", "2019-02-01", "2019-01-31"]))
    weights = recency_weights(pickup, 0.5)
    span = (pickup - pickup.min()) / (pickup.max() - pickup.min())
    np.testing.assert_allclose(weights, 0.5 + span.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(recency_weights(pickup, 0.0), np.ones(4))


def test_recency_weights_of_one_instant_or_a_missing_time_are_neutral() -> None:
    same = np.array(["2019-01-01T08:00"] * 3, dtype="datetime64[s]")
    np.testing.assert_array_equal(recency_weights(same, 0.9), np.ones(3))
    gap = np.array(["2019-01-01", "NaT", "2019-01-03"], dtype="datetime64[s]")
    np.testing.assert_allclose(recency_weights(gap, 0.5), [0.5, 1.0, 1.5])


@pytest.mark.parametrize("strength", [-0.1, 1.0, 2.0])
def test_a_recency_outside_zero_to_one_is_refused_by_name(strength: float) -> None:
    with pytest.raises(ConfigError, match=r"recency: .* is not in \[0, 1\)"):
        recency_weights(np.array(["2019-01-01"], dtype="datetime64[s]"), strength)


def _two_speeds(n: int = 400) -> pd.DataFrame:
    """January at 3 min a mile, February at 2: the same rides, traffic changed."""
    rng = np.random.default_rng(0)
    frames = []
    for month, pace in (("2019-01", 3.0), ("2019-02", 2.0)):
        distance = rng.uniform(1, 10, n)
        pickup = pd.Timestamp(f"{month}-01") + pd.to_timedelta(rng.uniform(0, 27 * 24, n), "h")
        frames.append(
            pd.DataFrame(
                {
                    "PULocationID": rng.integers(1, 5, n),
                    "DOLocationID": rng.integers(1, 5, n),
                    "trip_distance": distance,
                    "pickup_datetime": pickup,
                    "duration": pace * distance,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_the_ensemble_leans_towards_recent_traffic_as_its_recency_says() -> None:
    X, y = split_xy(_two_speeds(), get_family("hgb_ensemble").spec)
    ride = X.iloc[[0]].assign(trip_distance=5.0, pickup_datetime=pd.Timestamp("2019-03-04 12:00"))
    fast = {"n_models": 2, "max_iter": 200, "min_samples_leaf": 20}
    flat = fit_model("hgb_ensemble", {**fast, "recency": 0.0}, 0, X, y).predict(ride)[0]
    recent = fit_model("hgb_ensemble", {**fast, "recency": 0.9}, 0, X, y).predict(ride)[0]
    # ~12.5 min when both months count alike; nearer February's 10 when February counts more
    assert 11.5 < flat < 13.5
    assert recent < flat - 0.5


def test_the_ensemble_averages_members_of_different_seeds() -> None:
    X, y = split_xy(_two_speeds(), get_family("hgb_ensemble").spec)
    model = fit_model("hgb_ensemble", {"n_models": 3, "max_iter": 50}, 7, X, y)
    members = model.named_steps["regressor"].estimators_
    assert [m.random_state for m in members] == [7, 8, 9]
    each = np.array([m.predict(model.named_steps["features"].transform(X)) for m in members])
    assert not np.allclose(each[0], each[1])  # half the features at each split, by seed
    np.testing.assert_allclose(model.predict(X), each.mean(axis=0), rtol=0, atol=1e-12)


def test_the_light_list_of_names_is_the_families_own() -> None:
    """The command lines list shared.family_names without importing the models."""
    assert tuple(FAMILIES) == FAMILY_NAMES
    assert all(FAMILIES[name].name == name for name in FAMILY_NAMES)
