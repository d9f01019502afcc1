from __future__ import annotations

import numpy as np
import pytest

from level3_deployment.abstats import ab_report, compare, variant_quality


def errors(n: int, scale: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, scale, n)


def test_intervals_cover_the_true_value_about_95_percent_of_the_time() -> None:
    hits = sum(
        lo <= 5.0 <= hi
        for lo, hi in (variant_quality(errors(400, 5.0, s)).rmse_ci for s in range(400))
    )
    assert 0.91 <= hits / 400 <= 0.98


def test_quality_numbers() -> None:
    q = variant_quality(np.array([3.0, -4.0, 0.0, 5.0]))
    assert q.n == 4
    assert q.rmse == pytest.approx(np.sqrt(50 / 4))
    assert q.mae == pytest.approx(3.0)
    assert q.rmse_ci[0] <= q.rmse <= q.rmse_ci[1]


def test_no_verdict_before_the_minimum_sample() -> None:
    report = ab_report({"blue": errors(150, 5, 1), "green": errors(500, 3, 2)}, min_samples=200)
    assert report.verdict is None and report.comparison is None
    assert "150 blue and 500 green" in report.reason
    assert report.variants["green"].n == 500


def test_a_clearly_better_green_is_detected() -> None:
    report = ab_report({"blue": errors(2000, 6, 1), "green": errors(2000, 5, 2)})
    assert report.verdict == "green_better"
    assert report.comparison.rmse_diff_ci[1] < 0
    assert report.comparison.p_value < 0.001


def test_a_worse_green_is_detected() -> None:
    assert (
        ab_report({"blue": errors(2000, 5, 1), "green": errors(2000, 6, 2)}).verdict
        == "blue_better"
    )


def test_same_quality_is_no_difference_most_of_the_time() -> None:
    verdicts = [
        ab_report({"blue": errors(1000, 5, s), "green": errors(1000, 5, s + 1000)}).verdict
        for s in range(100)
    ]
    false_alarms = sum(v != "no_difference" for v in verdicts)
    assert false_alarms <= 12  # ~5 % expected at 95 % confidence


def test_difference_sign_convention() -> None:
    assert compare(errors(500, 5, 1), errors(500, 4, 2)).rmse_diff < 0
