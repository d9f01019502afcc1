"""The canary test's error rates (issue 19): the always-valid confidence sequence
(level3_deployment/sequential.py) against today's fixed-horizon rule (Welch's t-test on squared
errors, level3_deployment/abstats.py) re-applied at every look, on simulated canaries.

The residuals are real validation errors: the hgb champion trained on a real month and scored
on the next (../shared/data; generated months where the real ones are absent). Each simulated
canary draws its rides' errors from that pool; every ride goes to the canary with probability
``--share`` (A/B), and the test is read every ``--look-every`` labelled rides up to
``--budget`` (a canary that has not decided by then is inconclusive).

- A/A: both variants draw from the same pool: any verdict is false.
- 10 % worse: the canary's errors are the pool's times 1.1 (RMSE 10 % higher): a rollback
  within the budget is a detection.
- shadow (paired): both models score every ride; the canary's error is the blue's plus
  independent noise, so the paired difference needs fewer labels.

Usage: python -m benchmarks.canary [--sims N] [--budget N] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
from scipy import stats

from level3_deployment.sequential import TUNED_FOR, half_width, rho_squared

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "tlc-yellow-sample"
#: how alike two models' errors on the same ride are, in the shadow simulation
PAIRED_CORRELATION = 0.9


def residual_pool() -> tuple[np.ndarray, str]:
    """Validation errors (minutes) of an hgb model: trained on one month, scored on the next."""
    from shared.data.sources import GENERATED, MonthSource, load_source
    from shared.data.validate import ValidationBounds, clean_trips
    from shared.features import split_xy
    from shared.models import build_model, get_family

    real = REAL.is_dir() and any(REAL.glob("yellow_tripdata_2019-0[12].parquet"))
    where = str(REAL) if real else GENERATED
    frames = []
    for month in ("2019-01", "2019-02"):
        trips = load_source(MonthSource(where, month, rows=20000, seed=1)).trips.frame
        frames.append(clean_trips(trips, ValidationBounds(), month=month, source=month)[0])
    spec = get_family("hgb").spec
    model = build_model("hgb", {"max_iter": 200}).fit(*split_xy(frames[0], spec))
    x_val, y_val = split_xy(frames[1], spec)
    label = "real 2019-01 -> 2019-02" if real else "generated 2019-01 -> 2019-02"
    return np.asarray(model.predict(x_val) - y_val, dtype=np.float64), label


def _running(values: np.ndarray, looks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per simulation (rows) and look (columns): n, mean and sd of the first n values."""
    total = np.cumsum(values, axis=1)
    squares = np.cumsum(values**2, axis=1)
    n = looks.astype(np.float64)
    mean = total[:, looks - 1] / n
    var = (squares[:, looks - 1] - n * mean**2) / (n - 1)
    return n, mean, np.sqrt(np.maximum(var, 0.0))


def sequential_verdicts(outcomes: np.ndarray, looks: np.ndarray, alpha: float) -> np.ndarray:
    """-1 promote, +1 roll back, 0 none, at each look (the first decision stands)."""
    n, mean, sd = _running(outcomes, looks)
    width = half_width(n, sd, alpha, rho_squared(TUNED_FOR, alpha))
    return np.where(mean - width > 0, 1, np.where(mean + width < 0, -1, 0))


def welch_verdicts(
    canary_sq: list[np.ndarray], blue_sq: list[np.ndarray], alpha: float, min_samples: int
) -> np.ndarray:
    """Today's rule at each look: Welch's test on the squared errors so far, once both
    variants have ``min_samples``."""
    out = np.zeros(len(canary_sq), dtype=np.int64)
    for k, (c, b) in enumerate(zip(canary_sq, blue_sq, strict=True)):
        if min(c.size, b.size) < min_samples:
            continue
        test = stats.ttest_ind(c, b, equal_var=False)
        if test.pvalue < alpha:
            out[k] = 1 if c.mean() > b.mean() else -1
    return out


def first_decision(verdicts: np.ndarray, looks: np.ndarray) -> tuple[int, int | None]:
    """The first non-zero verdict and the labelled rides it took (0, None: none in budget)."""
    hits = np.flatnonzero(verdicts)
    if not hits.size:
        return 0, None
    return int(verdicts[hits[0]]), int(looks[hits[0]])


def simulate(
    pool: np.ndarray, args: argparse.Namespace, worse: float, paired: bool, seed: int
) -> dict[str, Any]:
    """``args.sims`` canaries; per canary the first verdict of each rule."""
    rng = np.random.default_rng(seed)
    looks = np.arange(args.look_every, args.budget + 1, args.look_every)
    results: dict[str, list[tuple[int, int | None]]] = {"sequential": [], "welch": []}
    for _ in range(args.sims):
        blue = rng.choice(pool, args.budget)
        if paired:
            # another model's errors on the same rides: correlated with blue's (0.9), its RMSE
            # ``worse`` times blue's
            # (correlated around the pool's mean error, so an A/A canary's MSE equals blue's)
            bias, rho = float(pool.mean()), PAIRED_CORRELATION
            noise = rng.choice(pool, args.budget) - bias
            canary = worse * (rho * (blue - bias) + math.sqrt(1 - rho**2) * noise + bias)
            outcomes = (canary**2 - blue**2)[None, :]
        else:
            to_canary = rng.random(args.budget) < args.share
            canary = rng.choice(pool, args.budget) * worse
            loss = np.where(to_canary, canary**2, blue**2)
            outcomes = np.where(to_canary, loss / args.share, -loss / (1 - args.share))[None, :]
        seq = sequential_verdicts(outcomes, looks, args.alpha)[0]
        results["sequential"].append(first_decision(seq, looks))
        if not paired:
            sq_c = [loss[:k][to_canary[:k]] for k in looks]
            sq_b = [loss[:k][~to_canary[:k]] for k in looks]
            welch = welch_verdicts(sq_c, sq_b, args.alpha, args.min_samples)
            results["welch"].append(first_decision(welch, looks))
    return {rule: _rates(found) for rule, found in results.items() if found}


def _rates(found: list[tuple[int, int | None]]) -> dict[str, Any]:
    rollbacks = [n for v, n in found if v == 1]
    promotes = [n for v, n in found if v == -1]
    decided = [n for v, n in found if n is not None]
    return {
        "rollback_rate": len(rollbacks) / len(found),
        "promote_rate": len(promotes) / len(found),
        "median_labels_to_decision": float(np.median(decided)) if decided else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=40_000, help="labelled rides per canary")
    parser.add_argument("--look-every", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-samples", type=int, default=200, help="Welch's rule's minimum")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pool, source = residual_pool()
    aa = simulate(pool, args, 1.0, paired=False, seed=1)
    worse = simulate(pool, args, 1.1, paired=False, seed=2)
    paired_worse = simulate(pool, args, 1.1, paired=True, seed=3)
    paired_aa = simulate(pool, args, 1.0, paired=True, seed=4)
    result = {
        "residuals": source,
        "residual_rmse": round(math.sqrt(float(np.mean(pool**2))), 3),
        "simulations": args.sims,
        "label_budget": args.budget,
        "look_every": args.look_every,
        "canary_share": args.share,
        "alpha": args.alpha,
        "sequence_tuned_for": TUNED_FOR,
        "aa_false_rollback_rate": aa["sequential"]["rollback_rate"],
        "aa_false_promote_rate": aa["sequential"]["promote_rate"],
        "fixed_horizon_false_rollback_rate": aa["welch"]["rollback_rate"],
        "fixed_horizon_false_promote_rate": aa["welch"]["promote_rate"],
        "power_10pct_worse": worse["sequential"]["rollback_rate"],
        "fixed_horizon_power_10pct_worse": worse["welch"]["rollback_rate"],
        "median_labels_to_decision": worse["sequential"]["median_labels_to_decision"],
        "paired_aa_false_rollback_rate": paired_aa["sequential"]["rollback_rate"],
        "paired_power_10pct_worse": paired_worse["sequential"]["rollback_rate"],
        "paired_median_labels_to_decision": paired_worse["sequential"]["median_labels_to_decision"],
    }
    out = args.out or ROOT / ".taxi-mlops" / "reports" / "bench" / "canary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:<40} {value}")


if __name__ == "__main__":
    main()
