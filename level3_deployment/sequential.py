"""An always-valid canary test: a confidence sequence for the canary's loss minus blue's.

A fixed-horizon test (Welch's, in abstats.py) is valid once, at a sample size fixed in advance.
A canary is looked at again and again as labels arrive, and every look is another chance of a
false verdict. A confidence sequence holds at every sample size at once: the chance that the
true difference ever leaves it is at most alpha, however often it is read, so a verdict may be
taken the moment the sequence excludes zero.

The statistic (Waudby-Smith, Arnold, Wu, Ramdas and Howard, "Time-uniform central limit theory
and asymptotic confidence sequences", Annals of Statistics 2024, Theorem 2.2, and its
randomized-experiment example):

- the loss of a ride is its squared error (what RMSE is made of);
- A/B: a ride goes to the canary with probability ``share``; its pseudo-outcome is
  ``loss / share`` for a canary ride and ``-loss / (1 - share)`` for a blue ride, whose mean is
  the canary's mean loss minus blue's (inverse-propensity weighting);
- shadow: both models score every ride, so the pseudo-outcome is the paired difference
  ``canary loss - blue loss``: the same question, with far less noise;
- the sequence at n pseudo-outcomes with mean m and standard deviation s is
  ``m +/- s * sqrt(2 (n r^2 + 1) / (n^2 r^2) * log(sqrt(n r^2 + 1) / alpha))``, where r sets the
  sample size at which it is tightest (``tuned_for``).

It is asymptotic (the variance is estimated), like the t-test it replaces; the canary benchmark
(benchmarks/canary.py) measures its error rates on residuals drawn from real validation errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the sample size at which the sequence is tightest by default: half of the label budget the
#: canary benchmark (benchmarks/canary.py) measures its error rates and power on
TUNED_FOR = 20_000
#: the verdicts, as the A/B report names them
CANARY_WORSE = "blue_better"
CANARY_BETTER = "green_better"


@dataclass(frozen=True)
class SequentialResult:
    """The confidence sequence for canary loss minus blue loss (mean squared error), now."""

    n: int
    difference: float
    lower: float
    upper: float
    #: blue's mean squared error, which a relative non-inferiority margin scales
    blue_mse: float
    verdict: str | None
    reason: str


def rho_squared(tuned_for: int, alpha: float) -> float:
    """The mixing parameter that makes the sequence tightest at ``tuned_for`` samples
    (the paper's closed-form choice)."""
    log_term = -2 * math.log(alpha)
    return (log_term + math.log(log_term + 1)) / tuned_for


def half_width(n: np.ndarray, sd: np.ndarray, alpha: float, rho2: float) -> np.ndarray:
    """The sequence's half-width at each of ``n`` samples (vectorised over time)."""
    n = np.asarray(n, dtype=np.float64)
    radius = 2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha)
    return np.asarray(sd) * np.sqrt(radius)


def pseudo_outcomes(
    canary_loss: np.ndarray, blue_loss: np.ndarray, share: float | None
) -> np.ndarray:
    """Per-ride outcomes whose mean is canary loss minus blue loss. ``share`` is the canary's
    share of rides (A/B: two separate groups of rides); None means paired (shadow: both losses
    for each ride, in the same order)."""
    canary_loss, blue_loss = np.asarray(canary_loss, float), np.asarray(blue_loss, float)
    if share is None:
        if canary_loss.shape != blue_loss.shape:
            raise ValueError("paired losses need one canary and one blue loss per ride")
        return canary_loss - blue_loss
    if not 0 < share < 1:
        raise ValueError(f"share {share}: must be strictly between 0 and 1")
    return np.concatenate([canary_loss / share, -blue_loss / (1 - share)])


def decide(
    outcomes: np.ndarray,
    blue_mse: float,
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    tuned_for: int = TUNED_FOR,
    min_samples: int = 100,
) -> SequentialResult:
    """The sequence now, and a verdict when it excludes the boundary: roll back when the canary's
    loss is shown above blue's (lower bound > 0), promote when it is shown below
    ``blue_mse * margin`` above blue's (upper bound < that: better, or non-inferior within the
    margin). ``outcomes`` must be in arrival order only for the record: the sequence's coverage
    holds at every n, so the verdict may be read at any look."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    n = outcomes.size
    if n < max(min_samples, 2):
        reason = f"too early: {n} labelled rides; the sequence is read from {min_samples}"
        return SequentialResult(n, math.nan, -math.inf, math.inf, blue_mse, None, reason)
    mean, sd = float(outcomes.mean()), float(outcomes.std(ddof=1))
    rho2 = rho_squared(tuned_for, alpha)
    width = float(half_width(np.array([n]), np.array([sd]), alpha, rho2)[0])
    lower, upper = mean - width, mean + width
    interval = f"difference in [{lower:.3g}, {upper:.3g}] after {n} rides"
    verdict: str | None = None
    if lower > 0:
        verdict, reason = CANARY_WORSE, f"canary MSE above blue's: {interval}"
    elif upper < margin * blue_mse:
        kind = "below blue's" if margin == 0 else f"within {margin:.0%} of blue's"
        verdict, reason = CANARY_BETTER, f"canary MSE {kind}: {interval}"
    else:
        reason = f"undecided: {interval}"
    return SequentialResult(n, mean, lower, upper, blue_mse, verdict, reason)
