"""The always-valid canary test (level3_deployment/sequential.py): its verdicts on tiny, clear
cases, its pseudo-outcomes, and its coverage under repeated looks (the property a fixed-horizon
test lacks). Error rates on real residuals: benchmarks/canary.py."""

from __future__ import annotations

import numpy as np
import pytest

from level3_deployment.sequential import (
    CANARY_BETTER,
    CANARY_WORSE,
    decide,
    half_width,
    pseudo_outcomes,
    rho_squared,
)


def losses(rng: np.random.Generator, n: int, rmse: float) -> np.ndarray:
    return rng.normal(0, rmse, n) ** 2


def test_the_ab_pseudo_outcomes_average_to_the_difference_of_mean_losses() -> None:
    outcomes = pseudo_outcomes(np.array([2.0, 2.0]), np.array([1.0, 1.0]), share=0.5)
    assert outcomes.mean() == pytest.approx(2.0 - 1.0)
    paired = pseudo_outcomes(np.array([3.0, 1.0]), np.array([1.0, 2.0]), share=None)
    assert paired.tolist() == [2.0, -1.0]
    with pytest.raises(ValueError, match="one canary and one blue loss"):
        pseudo_outcomes(np.ones(3), np.ones(2), share=None)
    with pytest.raises(ValueError, match="strictly between"):
        pseudo_outcomes(np.ones(3), np.ones(2), share=1.0)


def test_a_clearly_worse_canary_is_rolled_back_and_a_clearly_better_one_promoted() -> None:
    rng = np.random.default_rng(0)
    blue = losses(rng, 4000, 4.0)
    worse = pseudo_outcomes(losses(rng, 4000, 6.0), blue, share=None)
    better = pseudo_outcomes(losses(rng, 4000, 3.0), blue, share=None)
    assert decide(worse, blue.mean()).verdict == CANARY_WORSE
    assert decide(better, blue.mean()).verdict == CANARY_BETTER
    same = pseudo_outcomes(losses(rng, 4000, 4.0), blue, share=None)
    assert decide(same, blue.mean()).verdict is None


def test_too_few_rides_give_no_verdict_whatever_they_say() -> None:
    result = decide(np.full(50, 100.0), 1.0, min_samples=100)
    assert result.verdict is None and "too early" in result.reason


def test_a_margin_promotes_a_canary_no_worse_than_it_allows() -> None:
    rng = np.random.default_rng(1)
    blue = losses(rng, 20000, 4.0)
    equal = pseudo_outcomes(losses(rng, 20000, 4.0), blue, share=None)
    assert decide(equal, blue.mean(), margin=0.0).verdict is None
    assert decide(equal, blue.mean(), margin=0.1).verdict == CANARY_BETTER


def test_repeated_looks_at_an_aa_canary_rarely_cross_unlike_a_fixed_interval() -> None:
    """200 A/A sequences read at 40 looks each: the sequence excludes zero at some look in
    about alpha of them or fewer; a fixed 95 % interval read at the same looks does far more."""
    rng = np.random.default_rng(2)
    looks = np.arange(100, 4001, 100)
    crossed = fixed = 0
    for _ in range(200):
        values = rng.normal(0, 1, looks[-1])
        total, squares = np.cumsum(values), np.cumsum(values**2)
        n = looks.astype(float)
        mean = total[looks - 1] / n
        sd = np.sqrt((squares[looks - 1] - n * mean**2) / (n - 1))
        width = half_width(n, sd, 0.05, rho_squared(2000, 0.05))
        crossed += bool(np.any(np.abs(mean) > width))
        fixed += bool(np.any(np.abs(mean) > 1.96 * sd / np.sqrt(n)))
    assert crossed / 200 <= 0.05
    assert fixed / 200 > 0.15
