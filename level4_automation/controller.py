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
    incident, too few rows, a degraded error, a refresh due, drift without labels, drift
    alone, healthy."""
    limit = (
        reference_rmse * (1 + policy.quality.max_rmse_increase)
        if reference_rmse is not None
        else None
    )
    cooled = replace(
        state,
        cooldown_left=max(state.cooldown_left - 1, 0),
        since_retrain=state.since_retrain + 1,
    )
    watch = _Watch(policy, state, cooled, metrics, reference_rmse, limit, deployment)
    action, name, reason, new_state = _first_rule(_WATCH_RULES, watch, _healthy)
    if action == RETRAIN:
        new_state = replace(new_state, since_retrain=0)
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
        "refresh_windows": policy.trigger.refresh_windows,
        "since_retrain": state.since_retrain,
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


def _refresh(w: _Watch) -> Outcome | None:
    every = w.policy.trigger.refresh_windows
    age = w.cooled.since_retrain
    if every is None or age < every or not w.measured or w.state.cooldown_left > 0:
        return None
    return (
        RETRAIN,
        "refresh",
        f"{age} window(s) since the last retraining (refresh every {every}); RMSE "
        f"{w.metrics.rmse:.3f} within {w.limit:.3f}: retrain on the newest labels anyway",
        replace(w.cooled, streak=0),
    )


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
    _refresh,
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
    #: the canary's own validation RMSE, which its error in the window is held to
    canary_reference: float | None = None

    @property
    def held(self) -> LoopState:
        """The state when the canary stays in place: one more window behind it."""
        return replace(self.state, canary_windows=self.windows)


def decide_canary(
    policy: Policy,
    state: LoopState,
    metrics: WindowMetrics,
    ab: dict[str, Any],
    deployment: Deployment,
    canary_reference: float | None = None,
) -> tuple[Verdict, LoopState]:
    """``ab`` is the level-3 A/B report for the current blue/green pair. The first canary rule
    that applies, in order: the canary gone, a data incident, a split that does not give the
    canary its share, the A/B verdict, an undecided canary whose own error degraded, no verdict
    in time, pending. ``canary_reference`` is the canary's validation RMSE (None: unknown)."""
    done = replace(
        state,
        phase="watch",
        canary_version=None,
        canary_windows=0,
        streak=0,
        cooldown_left=policy.trigger.cooldown_windows,
    )
    windows = state.canary_windows + 1
    canary = _Canary(policy, state, done, windows, metrics, ab, deployment, canary_reference)
    action, name, reason, new_state = _first_rule(_CANARY_RULES, canary, _ab_pending)
    thresholds = {
        "test": policy.canary.test,
        "min_samples": policy.canary.min_samples,
        "confidence": policy.canary.confidence,
        "margin": policy.canary.margin,
        "max_windows": policy.canary.max_windows,
        "abandon_rmse_increase": policy.canary.abandon_rmse_increase,
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
        "test": ab.get("test", "welch"),
        "p_value": _r((ab.get("comparison") or {}).get("p_value")),
        "sequence": _sequence_evidence(ab.get("sequence")),
        "sample_ratio": ab.get("sample_ratio"),
        "canary_windows": c.windows,
        "invalid_share": _r(c.metrics.invalid_share),
    }


def _sequence_evidence(sequence: dict[str, Any] | None) -> dict[str, Any] | None:
    """The confidence sequence for canary MSE minus blue's, as the decision log keeps it."""
    if not sequence:
        return None
    keys = ("n", "difference", "lower", "upper", "blue_mse")
    return {k: sequence[k] if k == "n" else _r(sequence[k]) for k in keys}


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
        c.held,
    )


def _sample_ratio_mismatch(c: _Canary) -> Outcome | None:
    ratio = c.ab.get("sample_ratio") or {}
    if not ratio.get("mismatch"):
        return None
    return (
        ALERT,
        "sample_ratio_mismatch",
        f"{c.ab.get('reason')}: fix the routing or the labels; the canary stays as it is",
        c.held,
    )


def _ab_verdict(c: _Canary) -> Outcome | None:
    verdict = c.ab.get("verdict")
    if verdict == "green_better":
        return PROMOTE, "ab_green_better", str(c.ab.get("reason")), c.done
    if verdict == "blue_better":
        return ROLLBACK, "ab_blue_better", str(c.ab.get("reason")), c.done
    return None


def _overtaken(c: _Canary) -> Outcome | None:
    """The world moved while the canary was undecided: the canary's own error in this window is
    ``canary.abandon_rmse_increase`` above its own validation RMSE. It was trained before the
    move, so it is rolled back without a cooldown, and the degraded window starts a streak:
    the next cycle retrains on the new traffic instead of waiting out the canary's budget."""
    green = c.metrics.per_version.get(str(c.deployment.green)) or {}
    rmse, rows, reference = green.get("rmse"), green.get("rows", 0), c.canary_reference
    if rmse is None or reference is None or rows < c.policy.canary.min_samples:
        return None
    increase = c.policy.canary.abandon_rmse_increase
    limit = reference * (1 + increase)
    if not rmse > limit:
        return None
    return (
        ROLLBACK,
        "canary_overtaken",
        f"the canary's RMSE in this window {rmse:.3f} > {limit:.3f} (its validation RMSE "
        f"{reference:.3f} + {increase:.0%}) while undecided "
        f"({c.ab.get('reason')}): the traffic moved on; roll back, retrain on it",
        replace(c.done, cooldown_left=0, streak=1),
    )


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
    return WAIT, "ab_pending", str(c.ab.get("reason")), c.held


_CANARY_RULES = (
    _canary_gone,
    _canary_data_hold,
    _sample_ratio_mismatch,
    _ab_verdict,
    _overtaken,
    _ab_inconclusive,
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
