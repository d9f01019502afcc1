"""The loop's decisions as pure functions: each rule, with its evidence and thresholds."""

from __future__ import annotations

import pytest

from level4_automation import controller as ctl
from level4_automation.monitor import WindowMetrics
from level4_automation.policy import Policy, parse_policy
from level4_automation.store import LoopState

BLUE_ONLY = ctl.Deployment(blue=1, green=None, green_percent=0.0)
POLICY = Policy()
REFERENCE = 5.0


def window(**fields: object) -> WindowMetrics:
    base: dict[str, object] = {"start": "s", "end": "e", "rows": 10_000, "valid_labelled": 9000}
    base.update(fields)
    return WindowMetrics(**base)  # type: ignore[arg-type]


def watch(metrics: WindowMetrics, state: LoopState | None = None, policy: Policy = POLICY):
    return ctl.decide_watch(policy, state or LoopState(), metrics, REFERENCE, BLUE_ONLY)


def test_healthy_window_does_nothing() -> None:
    verdict, state = watch(window(rmse=5.2))
    assert (verdict.action, verdict.rule) == ("none", "healthy")
    assert verdict.thresholds["max_rmse"] == pytest.approx(5.75)
    assert state.streak == 0


def test_error_increase_triggers_retraining() -> None:
    verdict, _ = watch(window(rmse=6.0, data_drift=True, drifted_columns=["trip_distance"]))
    assert (verdict.action, verdict.rule) == ("retrain", "error_increase")
    assert "trip_distance" in verdict.reason
    assert verdict.evidence["rmse_ratio"] == pytest.approx(1.2)


def test_drift_with_no_error_increase_only_warns() -> None:
    verdict, _ = watch(window(rmse=5.1, data_drift=True, drifted_columns=["PULocationID"]))
    assert (verdict.action, verdict.rule) == ("alert", "drift_without_error")


def test_drift_without_labels_warns_unless_the_policy_allows_retraining() -> None:
    metrics = window(rmse=None, valid_labelled=10, data_drift=True)
    assert watch(metrics)[0].rule == "drift_without_labels"
    assert watch(metrics)[0].action == "alert"
    eager = parse_policy("drift:\n  retrain_without_labels: true\n")
    assert watch(metrics, policy=eager)[0].action == "retrain"


def test_consecutive_windows_and_cooldown() -> None:
    patient = parse_policy("trigger:\n  consecutive_windows: 2\n")
    first, state = watch(window(rmse=7.0), policy=patient)
    assert (first.action, state.streak) == ("wait", 1)
    second, state = watch(window(rmse=7.0), state, policy=patient)
    assert second.action == "retrain"
    cooling, state = watch(window(rmse=7.0), LoopState(cooldown_left=1))
    assert (cooling.action, cooling.rule, state.cooldown_left) == ("wait", "cooldown", 0)


def test_a_data_incident_alerts_and_leaves_the_streak_alone() -> None:
    verdict, state = watch(window(rmse=9.0, invalid_share=0.3), LoopState(streak=1))
    assert (verdict.action, verdict.rule) == ("alert", "data_quality")
    assert state.streak == 1


def test_too_few_rows() -> None:
    assert watch(window(rows=10, rmse=9.0))[0].rule == "too_few_rows"


def test_a_canary_already_in_place_is_adopted() -> None:
    deployment = ctl.Deployment(blue=1, green=4, green_percent=20)
    verdict, state = ctl.decide_watch(POLICY, LoopState(), window(), REFERENCE, deployment)
    assert verdict.action == "adopt_canary"
    assert (state.phase, state.canary_version) == ("canary", 4)


CANARY = LoopState(phase="canary", canary_version=2)
PAIR = ctl.Deployment(blue=1, green=2, green_percent=20)


def report(verdict: str | None) -> dict:
    quality = {"n": 500, "rmse": 5.0, "rmse_ci": [4.8, 5.2]}
    return {
        "verdict": verdict,
        "reason": "r",
        "variants": {"blue": quality, "green": quality},
        "comparison": {"p_value": 0.01},
    }


@pytest.mark.parametrize(
    ("ab", "action", "rule"),
    [
        ("green_better", "promote", "ab_green_better"),
        ("blue_better", "rollback", "ab_blue_better"),
        ("no_difference", "wait", "ab_pending"),
        (None, "wait", "ab_pending"),
    ],
)
def test_canary_verdicts(ab: str | None, action: str, rule: str) -> None:
    verdict, state = ctl.decide_canary(POLICY, CANARY, window(), report(ab), PAIR)
    assert (verdict.action, verdict.rule) == (action, rule)
    if action in ("promote", "rollback"):
        assert (state.phase, state.cooldown_left) == ("watch", POLICY.trigger.cooldown_windows)


def test_an_inconclusive_canary_follows_the_policy() -> None:
    late = LoopState(phase="canary", canary_version=2, canary_windows=1)
    verdict, _ = ctl.decide_canary(POLICY, late, window(), report("no_difference"), PAIR)
    assert (verdict.action, verdict.rule) == ("rollback", "ab_inconclusive")
    bold = parse_policy("canary:\n  on_inconclusive: promote\n")
    assert ctl.decide_canary(bold, late, window(), report(None), PAIR)[0].action == "promote"


def test_no_verdict_on_bad_data_and_a_vanished_canary() -> None:
    verdict, _ = ctl.decide_canary(
        POLICY, CANARY, window(invalid_share=0.5), report("green_better"), PAIR
    )
    assert verdict.rule == "data_quality_hold"
    gone, state = ctl.decide_canary(POLICY, CANARY, window(), report(None), BLUE_ONLY)
    assert (gone.rule, state.phase) == ("canary_gone", "watch")


def test_gate() -> None:
    assert ctl.gate(POLICY, 4.9, 5.0)[0]
    assert not ctl.gate(POLICY, 5.0, 5.0)[0]
    lenient = parse_policy("gate:\n  non_inferiority_margin: 0.05\n")
    assert ctl.gate(lenient, 5.2, 5.0)[0]
    assert ctl.gate(POLICY, 9.0, None)[0]
