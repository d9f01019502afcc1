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
class ABReport:
    variants: dict[str, VariantQuality]
    comparison: Comparison | None
    verdict: str | None  # "green_better", "blue_better", "no_difference", or None (too early)
    reason: str
    min_samples: int
    confidence: float

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


def ab_report(
    errors: dict[str, np.ndarray], *, min_samples: int = 200, confidence: float = 0.95
) -> ABReport:
    """``errors`` maps variant -> prediction minus actual, for labelled predictions."""
    variants = {v: variant_quality(e, confidence) for v, e in errors.items() if len(e)}
    counts = {v: len(errors.get(v, ())) for v in ("blue", "green")}
    if min(counts.values()) < min_samples:
        reason = (
            f"too early: {counts['blue']} blue and {counts['green']} green labelled predictions; "
            f"a verdict needs {min_samples} of each"
        )
        return ABReport(variants, None, None, reason, min_samples, confidence)
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
