"""The loop's decisions, as pure functions of the policy, the loop state and the evidence.

Two phases. *watch*: is the champion still good? (data incident -> alert and do nothing;
error above the champion's own validation error for enough windows -> retrain; drift with no
error increase -> warn only, so drift alone never starts a retraining storm). *canary*: a
candidate serves a share of traffic; the A/B verdict promotes it or rolls it back, and
without a verdict after ``max_windows`` the policy's ``on_inconclusive`` applies.

Side effects (retraining, deploying, alerting) live in :mod:`level4_automation.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from level4_automation.monitor import WindowMetrics
from level4_automation.policy import Policy
from level4_automation.store import LoopState

RETRAIN = "retrain"
PROMOTE = "promote"
ROLLBACK = "rollback"
ALERT = "alert"
WAIT = "wait"
NONE = "none"
ADOPT = "adopt_canary"


@dataclass(frozen=True)
class Verdict:
    action: str
    rule: str
    reason: str
    evidence: dict[str, Any]
    thresholds: dict[str, Any]


@dataclass(frozen=True)
class Deployment:
    blue: int | None
    green: int | None
    green_percent: float


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def evidence(metrics: WindowMetrics, reference_rmse: float | None) -> dict[str, Any]:
    return {
        "rows": metrics.rows,
        "valid_labels": metrics.valid_labelled,
        "rmse": _r(metrics.rmse),
        "reference_rmse": _r(reference_rmse),
        "rmse_ratio": (
            _r(metrics.rmse / reference_rmse) if metrics.rmse and reference_rmse else None
        ),
        "drift_share": _r(metrics.drift_share),
        "drifted_columns": metrics.drifted_columns,
        "prediction_drift_score": _r(metrics.prediction_drift_score),
        "invalid_share": _r(metrics.invalid_share),
        "refused": metrics.refused,
        "invalid_labels": metrics.invalid_labels,
    }


def drift_text(metrics: WindowMetrics) -> str:
    """What drifted, in words: the columns, and the predictions if they did."""
    parts = []
    if metrics.drifted_columns:
        share = f"{metrics.drift_share:.0%} of the watched columns"
        parts.append(f"{share} ({', '.join(metrics.drifted_columns)})")
    if metrics.prediction_drift:
        parts.append(f"the predictions (score {metrics.prediction_drift_score:.3f})")
    return " and ".join(parts) or "nothing"


def data_incident(policy: Policy, metrics: WindowMetrics) -> bool:
    return metrics.invalid_share > policy.data_quality.max_invalid_share


def decide_watch(
    policy: Policy,
    state: LoopState,
    metrics: WindowMetrics,
    reference_rmse: float | None,
    deployment: Deployment,
) -> tuple[Verdict, LoopState]:
    seen = evidence(metrics, reference_rmse)
    limit = (
        reference_rmse * (1 + policy.quality.max_rmse_increase)
        if reference_rmse is not None
        else None
    )
    thresholds: dict[str, Any] = {
        "max_invalid_share": policy.data_quality.max_invalid_share,
        "min_rows": policy.trigger.min_rows,
        "min_labels": policy.quality.min_labels,
        "max_rmse": _r(limit),
        "max_rmse_increase": policy.quality.max_rmse_increase,
        "drift_share": policy.drift.drift_share,
        "consecutive_windows": policy.trigger.consecutive_windows,
        "cooldown_left": state.cooldown_left,
    }
    cooled = replace(state, cooldown_left=max(state.cooldown_left - 1, 0))

    def verdict(action: str, rule: str, reason: str, new: LoopState) -> tuple[Verdict, LoopState]:
        return Verdict(action, rule, reason, seen, thresholds), new

    if deployment.green is not None and deployment.green_percent > 0:
        return verdict(
            ADOPT,
            "canary_in_place",
            f"v{deployment.green} already serves {deployment.green_percent:g}% of traffic: "
            "judge it by the A/B rule",
            replace(state, phase="canary", canary_version=deployment.green, canary_windows=0),
        )
    if data_incident(policy, metrics):
        return verdict(
            ALERT,
            "data_quality",
            f"{metrics.invalid_share:.1%} of the window's rides were refused or invalid "
            f"(limit {policy.data_quality.max_invalid_share:.0%}): data incident; no retraining "
            "on this data",
            cooled,  # the streak is neither advanced nor reset by a window we cannot trust
        )
    if metrics.rows < policy.trigger.min_rows:
        return verdict(
            NONE,
            "too_few_rows",
            f"{metrics.rows} predictions; at least {policy.trigger.min_rows} are needed",
            cooled,
        )
    measured = metrics.rmse is not None and limit is not None
    drifted = metrics.data_drift or metrics.prediction_drift
    if measured and metrics.rmse > limit:  # type: ignore[operator]
        streak = state.streak + 1
        why = (
            f"RMSE {metrics.rmse:.3f} > {limit:.3f} (champion's validation RMSE "
            f"{reference_rmse:.3f} + {policy.quality.max_rmse_increase:.0%})"
            + (f", with drift in {drift_text(metrics)}" if drifted else "")
            + f"; {streak} window(s) in a row"
        )
        if streak < policy.trigger.consecutive_windows:
            return verdict(WAIT, "degraded_streak", why, replace(cooled, streak=streak))
        if state.cooldown_left > 0:
            return verdict(
                WAIT,
                "cooldown",
                f"{why}; in cooldown for {state.cooldown_left} more window(s)",
                replace(cooled, streak=streak),
            )
        return verdict(RETRAIN, "error_increase", why, replace(cooled, streak=0))
    if not measured and drifted:
        reason = (
            f"drift in {drift_text(metrics)} with {metrics.valid_labelled} valid labels "
            f"(< {policy.quality.min_labels}): error unknown"
        )
        if policy.drift.retrain_without_labels:
            streak = state.streak + 1
            if streak >= policy.trigger.consecutive_windows and state.cooldown_left == 0:
                return verdict(RETRAIN, "drift_without_labels", reason, replace(cooled, streak=0))
            return verdict(WAIT, "drift_streak", reason, replace(cooled, streak=streak))
        return verdict(ALERT, "drift_without_labels", f"{reason}; warning only", cooled)
    if drifted:
        return verdict(
            ALERT,
            "drift_without_error",
            f"drift in {drift_text(metrics)} but RMSE {metrics.rmse:.3f} is within "
            f"{limit:.3f}: warning only, no retraining",
            replace(cooled, streak=0),
        )
    reason = (
        f"RMSE {metrics.rmse:.3f} within {limit:.3f}" if measured else "no drift, error unknown"
    )
    return verdict(NONE, "healthy", reason, replace(cooled, streak=0))


def decide_canary(
    policy: Policy,
    state: LoopState,
    metrics: WindowMetrics,
    ab: dict[str, Any],
    deployment: Deployment,
) -> tuple[Verdict, LoopState]:
    """``ab`` is the level-3 A/B report for the current blue/green pair."""
    canary = policy.canary
    windows = state.canary_windows + 1
    seen = {
        "blue": deployment.blue,
        "green": deployment.green,
        "verdict": ab.get("verdict"),
        "ab_reason": ab.get("reason"),
        "variants": {
            v: {"n": q["n"], "rmse": _r(q["rmse"]), "rmse_ci": [_r(x) for x in q["rmse_ci"]]}
            for v, q in (ab.get("variants") or {}).items()
        },
        "p_value": _r((ab.get("comparison") or {}).get("p_value")),
        "canary_windows": windows,
        "invalid_share": _r(metrics.invalid_share),
    }
    thresholds = {
        "min_samples": canary.min_samples,
        "confidence": canary.confidence,
        "max_windows": canary.max_windows,
        "on_inconclusive": canary.on_inconclusive,
    }
    done = replace(
        state,
        phase="watch",
        canary_version=None,
        canary_windows=0,
        streak=0,
        cooldown_left=policy.trigger.cooldown_windows,
    )

    def verdict(action: str, rule: str, reason: str, new: LoopState) -> tuple[Verdict, LoopState]:
        return Verdict(action, rule, reason, seen, thresholds), new

    if deployment.green != state.canary_version or deployment.green_percent <= 0:
        return verdict(
            NONE,
            "canary_gone",
            f"the canary v{state.canary_version} no longer gets traffic (changed outside "
            "level 4): back to watching",
            replace(done, cooldown_left=0),
        )
    if data_incident(policy, metrics):
        return verdict(
            WAIT,
            "data_quality_hold",
            f"{metrics.invalid_share:.1%} of rides refused or invalid: no verdict on bad data",
            replace(state, canary_windows=windows),
        )
    verdict_name = ab.get("verdict")
    if verdict_name == "green_better":
        return verdict(PROMOTE, "ab_green_better", str(ab.get("reason")), done)
    if verdict_name == "blue_better":
        return verdict(ROLLBACK, "ab_blue_better", str(ab.get("reason")), done)
    if windows >= canary.max_windows:
        action = PROMOTE if canary.on_inconclusive == "promote" else ROLLBACK
        return verdict(
            action,
            "ab_inconclusive",
            f"no verdict after {windows} window(s) ({ab.get('reason')}): "
            f"on_inconclusive = {canary.on_inconclusive}",
            done,
        )
    return verdict(
        WAIT, "ab_pending", str(ab.get("reason")), replace(state, canary_windows=windows)
    )


def gate(policy: Policy, candidate_rmse: float, champion_rmse: float | None) -> tuple[bool, str]:
    """May the retrained candidate go to a canary? Judged on the newest labelled holdout."""
    if champion_rmse is None:
        return True, f"no champion to compare with; candidate RMSE {candidate_rmse:.3f}"
    limit = champion_rmse * (1 + policy.gate.non_inferiority_margin)
    if candidate_rmse < limit:
        return True, (
            f"candidate RMSE {candidate_rmse:.3f} < {limit:.3f} (champion {champion_rmse:.3f} "
            f"x (1 + {policy.gate.non_inferiority_margin:g})) on the newest labelled rides"
        )
    return False, (
        f"candidate RMSE {candidate_rmse:.3f} >= {limit:.3f} (champion {champion_rmse:.3f} "
        f"x (1 + {policy.gate.non_inferiority_margin:g})): the champion stays"
    )
