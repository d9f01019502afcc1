from __future__ import annotations

import numpy as np
import pytest

from level3_deployment.abstats import (
    SequentialSettings,
    ab_report,
    compare,
    sample_ratio,
    sequential_report,
    variant_quality,
)


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


def test_the_sample_ratio_check_flags_a_split_that_misses_its_share() -> None:
    fair = sample_ratio(8_000, 2_000, 0.2)
    assert fair is not None and not fair.mismatch and fair.observed_share == pytest.approx(0.2)
    broken = sample_ratio(9_000, 1_000, 0.2)  # green gets 10 % of a 20 % split
    assert broken is not None and broken.mismatch and broken.p_value < 1e-6
    assert sample_ratio(0, 0, 0.2) is None and sample_ratio(10, 10, 1.0) is None


def ab_split(n: int, share: float, green_scale: float, seed: int) -> dict[str, np.ndarray]:
    green = int(n * share)
    return {"blue": errors(n - green, 5.0, seed), "green": errors(green, green_scale, seed + 1)}


def test_the_sequential_report_rolls_back_a_worse_canary_and_promotes_a_better_one() -> None:
    how = SequentialSettings(share=0.2, min_samples=100)
    worse = sequential_report(ab_split(20_000, 0.2, 7.0, 1), how)
    assert (worse.test, worse.verdict) == ("sequential", "blue_better")
    assert worse.sequence is not None and worse.sequence.lower > 0
    better = sequential_report(ab_split(20_000, 0.2, 3.5, 3), how)
    assert better.verdict == "green_better"
    assert better.sequence is not None and better.sequence.upper < 0
    same = sequential_report(ab_split(2_000, 0.2, 5.0, 5), how)
    assert same.verdict is None and same.reason.startswith("undecided")


def test_no_sequential_verdict_on_a_broken_split_or_too_few_labels() -> None:
    how = SequentialSettings(share=0.2, min_samples=100)
    broken = sequential_report(ab_split(20_000, 0.1, 7.0, 1), how)  # green got 10 %, not 20
    assert broken.verdict is None and broken.reason.startswith("sample ratio mismatch")
    assert broken.sample_ratio is not None and broken.sample_ratio.mismatch
    early = sequential_report(ab_split(300, 0.2, 7.0, 1), how)
    assert early.verdict is None and early.reason.startswith("too early")


def test_shadow_pairs_need_far_fewer_rides_than_a_split() -> None:
    """Both models err alike on most rides (the ride's own noise): the paired difference
    removes it, the A/B comparison of two groups cannot."""
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 5.0, 1_500)
    blue, green = noise + rng.normal(0, 0.5, 1_500), 1.1 * noise + rng.normal(0, 0.5, 1_500)
    paired = sequential_report({"blue": blue, "green": green}, SequentialSettings(share=None))
    assert paired.verdict == "blue_better"
    split = sequential_report(
        {"blue": blue[:1_200], "green": green[1_200:]}, SequentialSettings(share=0.2)
    )
    assert split.verdict is None
