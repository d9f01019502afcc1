"""Per-variant model quality from labelled predictions, with uncertainty, and a verdict only
when there is enough evidence.

Intervals are analytic, so a report is deterministic and cheap at any sample size:
- MSE is a mean of squared errors: normal CI, mapped through the square root for RMSE;
- MAE is a mean of absolute errors: normal CI;
- the difference: Welch's t-test on the squared errors (is green's MSE different from blue's?),
  with a CI for the RMSE difference by the delta method.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from level3_deployment import sequential
from level3_deployment.sequential import SequentialResult

#: a split is broken when counts this unlikely under the configured share are seen (the usual
#: sample-ratio-mismatch threshold: strict, because a real split's counts are huge)
SRM_P_VALUE = 0.001


@dataclass(frozen=True)
class VariantQuality:
    n: int
    rmse: float
    rmse_ci: tuple[float, float]
    mae: float
    mae_ci: tuple[float, float]


@dataclass(frozen=True)
class Comparison:
    """green minus blue: negative means green's errors are smaller."""

    rmse_diff: float
    rmse_diff_ci: tuple[float, float]
    p_value: float
    test: str = "Welch t-test on squared errors"


@dataclass(frozen=True)
class SampleRatio:
    """Did the split give green its share of the labelled rides? A chi-square goodness-of-fit
    test of the two counts against the configured share. A mismatch means the routing (or the
    labelling) is broken, and the A/B evidence is not evidence: it is an alert, not a verdict."""

    expected_share: float
    observed_share: float
    p_value: float
    mismatch: bool
    threshold: float = SRM_P_VALUE


@dataclass(frozen=True)
class ABReport:
    variants: dict[str, VariantQuality]
    comparison: Comparison | None
    verdict: str | None  # "green_better", "blue_better", "no_difference", or None (too early)
    reason: str
    min_samples: int
    confidence: float
    #: "welch": a fixed-horizon test, valid at one look; "sequential": an always-valid
    #: confidence sequence (level3_deployment/sequential.py), valid at every look
    test: str = "welch"
    sequence: SequentialResult | None = None
    sample_ratio: SampleRatio | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def variant_quality(errors: np.ndarray, confidence: float = 0.95) -> VariantQuality:
    errors = np.asarray(errors, dtype=np.float64)
    n = errors.size
    if n == 0:
        raise ValueError("no labelled predictions")
    z = stats.norm.ppf(0.5 + confidence / 2)
    squared, absolute = errors**2, np.abs(errors)
    mse, mae = squared.mean(), absolute.mean()
    mse_se = squared.std(ddof=1) / math.sqrt(n) if n > 1 else math.inf
    mae_se = absolute.std(ddof=1) / math.sqrt(n) if n > 1 else math.inf
    rmse_ci = (math.sqrt(max(mse - z * mse_se, 0.0)), math.sqrt(mse + z * mse_se))
    return VariantQuality(
        n=n,
        rmse=math.sqrt(mse),
        rmse_ci=rmse_ci,
        mae=float(mae),
        mae_ci=(max(float(mae - z * mae_se), 0.0), float(mae + z * mae_se)),
    )


def compare(blue: np.ndarray, green: np.ndarray, confidence: float = 0.95) -> Comparison:
    blue_sq, green_sq = np.asarray(blue, float) ** 2, np.asarray(green, float) ** 2
    test = stats.ttest_ind(green_sq, blue_sq, equal_var=False)
    rmse_blue, rmse_green = math.sqrt(blue_sq.mean()), math.sqrt(green_sq.mean())
    # delta method: Var(sqrt(M)) ~ Var(M) / (4 M)
    se = math.sqrt(
        blue_sq.var(ddof=1) / blue_sq.size / (4 * blue_sq.mean())
        + green_sq.var(ddof=1) / green_sq.size / (4 * green_sq.mean())
    )
    z = stats.norm.ppf(0.5 + confidence / 2)
    diff = rmse_green - rmse_blue
    return Comparison(diff, (diff - z * se, diff + z * se), float(test.pvalue))


def too_early(errors: dict[str, np.ndarray], min_samples: int) -> str | None:
    """Why no test may judge yet (None when both variants have ``min_samples`` labels)."""
    counts = {v: len(errors.get(v, ())) for v in ("blue", "green")}
    if min(counts.values()) >= min_samples:
        return None
    return (
        f"too early: {counts['blue']} blue and {counts['green']} green labelled predictions; "
        f"a verdict needs {min_samples} of each"
    )


def ab_report(
    errors: dict[str, np.ndarray], *, min_samples: int = 200, confidence: float = 0.95
) -> ABReport:
    """``errors`` maps variant -> prediction minus actual, for labelled predictions."""
    variants = {v: variant_quality(e, confidence) for v, e in errors.items() if len(e)}
    early = too_early(errors, min_samples)
    if early is not None:
        return ABReport(variants, None, None, early, min_samples, confidence)
    comparison = compare(errors["blue"], errors["green"], confidence)
    alpha = 1 - confidence
    if comparison.p_value >= alpha:
        verdict = "no_difference"
        reason = f"no significant difference in RMSE (p = {comparison.p_value:.3g} >= {alpha:g})"
    elif comparison.rmse_diff < 0:
        verdict = "green_better"
        reason = (
            f"green's RMSE is lower by {-comparison.rmse_diff:.3f} (p = {comparison.p_value:.3g})"
        )
    else:
        verdict = "blue_better"
        reason = (
            f"green's RMSE is higher by {comparison.rmse_diff:.3f} (p = {comparison.p_value:.3g})"
        )
    return ABReport(variants, comparison, verdict, reason, min_samples, confidence)


def sample_ratio(blue: int, green: int, share: float) -> SampleRatio | None:
    """The sample-ratio check of ``blue`` and ``green`` counts against green's ``share``
    (None when there is nothing to check: no rides, or a share of 0 or 1)."""
    total = blue + green
    if total == 0 or not 0 < share < 1:
        return None
    expected = [total * (1 - share), total * share]
    p_value = float(stats.chisquare([blue, green], expected).pvalue)
    return SampleRatio(share, green / total, p_value, p_value < SRM_P_VALUE)


@dataclass(frozen=True)
class SequentialSettings:
    """What a sequential report needs besides the errors: the split (green's ``share`` for
    A/B; None for shadow, where ``errors`` are paired ride by ride), the confidence, the
    non-inferiority ``margin`` (relative to blue's MSE) and the sample size the sequence is
    tuned for."""

    share: float | None
    confidence: float = 0.95
    margin: float = 0.0
    tuned_for: int = sequential.TUNED_FOR
    min_samples: int = 200


def sequential_report(errors: dict[str, np.ndarray], how: SequentialSettings) -> ABReport:
    """The A/B report judged by the confidence sequence on squared errors: A/B by inverse
    propensity weighting with the split's share, shadow by the paired difference."""
    variants = {v: variant_quality(e, how.confidence) for v, e in errors.items() if len(e)}
    blue, green = (np.asarray(errors.get(v, ()), float) for v in ("blue", "green"))
    ratio = None if how.share is None else sample_ratio(blue.size, green.size, how.share)

    def report(verdict: str | None, reason: str, seq: SequentialResult | None) -> ABReport:
        return ABReport(
            variants,
            None,
            verdict,
            reason,
            how.min_samples,
            how.confidence,
            "sequential",
            seq,
            ratio,
        )

    early = too_early(errors, how.min_samples)
    if early is not None:
        return report(None, early, None)
    if ratio is not None and ratio.mismatch:
        return report(
            None,
            f"sample ratio mismatch: green has {ratio.observed_share:.1%} of the labelled rides, "
            f"the split gives it {ratio.expected_share:.1%} (p = {ratio.p_value:.2g}): no "
            "verdict on a broken split",
            None,
        )
    outcomes = sequential.pseudo_outcomes(green**2, blue**2, how.share)
    found = sequential.decide(
        outcomes,
        float(np.mean(blue**2)),
        alpha=1 - how.confidence,
        margin=how.margin,
        tuned_for=how.tuned_for,
        min_samples=2,
    )
    return report(found.verdict, found.reason, found)
