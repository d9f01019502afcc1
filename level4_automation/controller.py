"""The loop's decisions, as pure functions of the policy, the loop state and the evidence.

Two phases. *watch*: is the champion still good? (data incident -> alert and do nothing;
error above the champion's own validation error for enough windows -> retrain; drift with no
error increase -> warn only, so drift alone never starts a retraining storm). *canary*: a
candidate serves a share of traffic; the A/B verdict promotes it or rolls it back, and
without a verdict after ``max_windows`` the policy's ``on_inconclusive`` applies.

Side effects (retraining, deploying, alerting) live in :mod:`level4_automation.loop`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

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


#: a rule's outcome: (action, rule, reason, the loop state after it)
Outcome = tuple[str, str, str, LoopState]


C = TypeVar("C")


def _first_rule(
    rules: Sequence[Callable[[C], Outcome | None]], context: C, otherwise: Callable[[C], Outcome]
) -> Outcome:
    """The outcome of the first rule that applies, in order; ``otherwise`` when none does."""
    for rule in rules:
        outcome = rule(context)
        if outcome is not None:
            return outcome
    return otherwise(context)


@dataclass(frozen=True)
class _Watch:
    """What the watch rules read: the policy, the state before and after this window (its
    cooldown counted down), the window, and the error limit (None without a reference)."""

    policy: Policy
    state: LoopState
    cooled: LoopState
    metrics: WindowMetrics
    reference_rmse: float | None
    limit: float | None
    deployment: Deployment

    @property
    def measured(self) -> bool:
        return self.metrics.rmse is not None and self.limit is not None

    @property
    def drifted(self) -> bool:
        return self.metrics.data_drift or self.metrics.prediction_drift


def decide_watch(
    policy: Policy,
    state: LoopState,
    metrics: WindowMetrics,
    reference_rmse: float | None,
    deployment: Deployment,
) -> tuple[Verdict, LoopState]:
    """The first watch rule that applies, in order: a canary already in place, a data
    incident, too few rows, a degraded error, drift without labels, drift alone, healthy."""
    limit = (
        reference_rmse * (1 + policy.quality.max_rmse_increase)
        if reference_rmse is not None
        else None
    )
    cooled = replace(state, cooldown_left=max(state.cooldown_left - 1, 0))
    watch = _Watch(policy, state, cooled, metrics, reference_rmse, limit, deployment)
    action, name, reason, new_state = _first_rule(_WATCH_RULES, watch, _healthy)
    seen = evidence(metrics, reference_rmse)
    return Verdict(action, name, reason, seen, _watch_thresholds(policy, state, limit)), new_state


def _watch_thresholds(policy: Policy, state: LoopState, limit: float | None) -> dict[str, Any]:
    return {
        "max_invalid_share": policy.data_quality.max_invalid_share,
        "min_rows": policy.trigger.min_rows,
        "min_labels": policy.quality.min_labels,
        "max_rmse": _r(limit),
        "max_rmse_increase": policy.quality.max_rmse_increase,
        "drift_share": policy.drift.drift_share,
        "consecutive_windows": policy.trigger.consecutive_windows,
        "cooldown_left": state.cooldown_left,
    }


def _canary_in_place(w: _Watch) -> Outcome | None:
    green, percent = w.deployment.green, w.deployment.green_percent
    if green is None or percent <= 0:
        return None
    return (
        ADOPT,
        "canary_in_place",
        f"v{green} already serves {percent:g}% of traffic: judge it by the A/B rule",
        replace(w.state, phase="canary", canary_version=green, canary_windows=0),
    )


def _data_quality(w: _Watch) -> Outcome | None:
    if not data_incident(w.policy, w.metrics):
        return None
    return (
        ALERT,
        "data_quality",
        f"{w.metrics.invalid_share:.1%} of the window's rides were refused or invalid "
        f"(limit {w.policy.data_quality.max_invalid_share:.0%}): data incident; no retraining "
        "on this data",
        w.cooled,  # the streak is neither advanced nor reset by a window we cannot trust
    )


def _too_few_rows(w: _Watch) -> Outcome | None:
    needed = w.policy.trigger.min_rows
    if w.metrics.rows >= needed:
        return None
    return (
        NONE,
        "too_few_rows",
        f"{w.metrics.rows} predictions; at least {needed} are needed",
        w.cooled,
    )


def _error_increase(w: _Watch) -> Outcome | None:
    rmse, limit, reference = w.metrics.rmse, w.limit, w.reference_rmse
    if rmse is None or limit is None or reference is None or not rmse > limit:
        return None
    streak = w.state.streak + 1
    why = (
        f"RMSE {rmse:.3f} > {limit:.3f} (champion's validation RMSE "
        f"{reference:.3f} + {w.policy.quality.max_rmse_increase:.0%})"
        + (f", with drift in {drift_text(w.metrics)}" if w.drifted else "")
        + f"; {streak} window(s) in a row"
    )
    if streak < w.policy.trigger.consecutive_windows:
        return WAIT, "degraded_streak", why, replace(w.cooled, streak=streak)
    if w.state.cooldown_left > 0:
        reason = f"{why}; in cooldown for {w.state.cooldown_left} more window(s)"
        return WAIT, "cooldown", reason, replace(w.cooled, streak=streak)
    return RETRAIN, "error_increase", why, replace(w.cooled, streak=0)


def _drift_without_labels(w: _Watch) -> Outcome | None:
    if w.measured or not w.drifted:
        return None
    reason = (
        f"drift in {drift_text(w.metrics)} with {w.metrics.valid_labelled} valid labels "
        f"(< {w.policy.quality.min_labels}): error unknown"
    )
    if not w.policy.drift.retrain_without_labels:
        return ALERT, "drift_without_labels", f"{reason}; warning only", w.cooled
    streak = w.state.streak + 1
    if streak >= w.policy.trigger.consecutive_windows and w.state.cooldown_left == 0:
        return RETRAIN, "drift_without_labels", reason, replace(w.cooled, streak=0)
    return WAIT, "drift_streak", reason, replace(w.cooled, streak=streak)


def _drift_without_error(w: _Watch) -> Outcome | None:
    if not w.drifted:
        return None
    return (
        ALERT,
        "drift_without_error",
        f"drift in {drift_text(w.metrics)} but RMSE {w.metrics.rmse:.3f} is within "
        f"{w.limit:.3f}: warning only, no retraining",
        replace(w.cooled, streak=0),
    )


def _healthy(w: _Watch) -> Outcome:
    reason = (
        f"RMSE {w.metrics.rmse:.3f} within {w.limit:.3f}"
        if w.measured
        else "no drift, error unknown"
    )
    return NONE, "healthy", reason, replace(w.cooled, streak=0)


_WATCH_RULES = (
    _canary_in_place,
    _data_quality,
    _too_few_rows,
    _error_increase,
    _drift_without_labels,
    _drift_without_error,
)


@dataclass(frozen=True)
class _Canary:
    """What the canary rules read: the state before this window, the state after a verdict
    (back to watching, in cooldown), the windows so far (this one included) and the A/B
    report for the blue/green pair."""

    policy: Policy
    state: LoopState
    done: LoopState
    windows: int
    metrics: WindowMetrics
    ab: dict[str, Any]
    deployment: Deployment


def decide_canary(
    policy: Policy,
    state: LoopState,
    metrics: WindowMetrics,
    ab: dict[str, Any],
    deployment: Deployment,
) -> tuple[Verdict, LoopState]:
    """``ab`` is the level-3 A/B report for the current blue/green pair. The first canary rule
    that applies, in order: the canary gone, a data incident, the A/B verdict, no verdict in
    time, pending."""
    done = replace(
        state,
        phase="watch",
        canary_version=None,
        canary_windows=0,
        streak=0,
        cooldown_left=policy.trigger.cooldown_windows,
    )
    windows = state.canary_windows + 1
    canary = _Canary(policy, state, done, windows, metrics, ab, deployment)
    action, name, reason, new_state = _first_rule(_CANARY_RULES, canary, _ab_pending)
    thresholds = {
        "min_samples": policy.canary.min_samples,
        "confidence": policy.canary.confidence,
        "max_windows": policy.canary.max_windows,
        "on_inconclusive": policy.canary.on_inconclusive,
    }
    return Verdict(action, name, reason, _canary_evidence(canary), thresholds), new_state


def _canary_evidence(c: _Canary) -> dict[str, Any]:
    ab = c.ab
    return {
        "blue": c.deployment.blue,
        "green": c.deployment.green,
        "verdict": ab.get("verdict"),
        "ab_reason": ab.get("reason"),
        "variants": {
            v: {"n": q["n"], "rmse": _r(q["rmse"]), "rmse_ci": [_r(x) for x in q["rmse_ci"]]}
            for v, q in (ab.get("variants") or {}).items()
        },
        "p_value": _r((ab.get("comparison") or {}).get("p_value")),
        "canary_windows": c.windows,
        "invalid_share": _r(c.metrics.invalid_share),
    }


def _canary_gone(c: _Canary) -> Outcome | None:
    if c.deployment.green == c.state.canary_version and c.deployment.green_percent > 0:
        return None
    return (
        NONE,
        "canary_gone",
        f"the canary v{c.state.canary_version} no longer gets traffic (changed outside "
        "level 4): back to watching",
        replace(c.done, cooldown_left=0),
    )


def _canary_data_hold(c: _Canary) -> Outcome | None:
    if not data_incident(c.policy, c.metrics):
        return None
    return (
        WAIT,
        "data_quality_hold",
        f"{c.metrics.invalid_share:.1%} of rides refused or invalid: no verdict on bad data",
        replace(c.state, canary_windows=c.windows),
    )


def _ab_verdict(c: _Canary) -> Outcome | None:
    verdict = c.ab.get("verdict")
    if verdict == "green_better":
        return PROMOTE, "ab_green_better", str(c.ab.get("reason")), c.done
    if verdict == "blue_better":
        return ROLLBACK, "ab_blue_better", str(c.ab.get("reason")), c.done
    return None


def _ab_inconclusive(c: _Canary) -> Outcome | None:
    canary = c.policy.canary
    if c.windows < canary.max_windows:
        return None
    return (
        PROMOTE if canary.on_inconclusive == "promote" else ROLLBACK,
        "ab_inconclusive",
        f"no verdict after {c.windows} window(s) ({c.ab.get('reason')}): "
        f"on_inconclusive = {canary.on_inconclusive}",
        c.done,
    )


def _ab_pending(c: _Canary) -> Outcome:
    return WAIT, "ab_pending", str(c.ab.get("reason")), replace(c.state, canary_windows=c.windows)


_CANARY_RULES = (_canary_gone, _canary_data_hold, _ab_verdict, _ab_inconclusive)


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
