"""The loop's decisions as pure functions: each rule, with its evidence and thresholds."""

from __future__ import annotations

from dataclasses import replace

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


def test_a_refresh_retrains_a_healthy_model_once_it_is_old_enough() -> None:
    policy = parse_policy("trigger:\n  refresh_windows: 3\n")
    state = LoopState()
    seen = []
    for _ in range(4):
        verdict, state = watch(window(rmse=5.2), state, policy)
        seen.append((verdict.rule, state.since_retrain))
    # the clock starts again at every retraining, whatever started it
    assert seen == [("healthy", 1), ("healthy", 2), ("refresh", 0), ("healthy", 1)]
    _, degraded = watch(window(rmse=6.0), LoopState(since_retrain=2), policy)
    assert degraded.since_retrain == 0
    # not without labels to train on, nor in a cooldown, nor when the policy has no refresh
    old = LoopState(since_retrain=9)
    assert watch(window(rmse=None, valid_labelled=10), old, policy)[0].rule == "healthy"
    assert watch(window(rmse=5.2), replace(old, cooldown_left=1), policy)[0].rule == "healthy"
    assert watch(window(rmse=5.2), old)[0].rule == "healthy"


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


def test_a_split_that_misses_its_share_alerts_and_keeps_the_canary() -> None:
    broken = {
        **report(None),
        "test": "sequential",
        "reason": "sample ratio mismatch: green has 10.0% of the labelled rides",
        "sample_ratio": {"expected_share": 0.2, "observed_share": 0.1, "mismatch": True},
    }
    verdict, state = ctl.decide_canary(POLICY, CANARY, window(), broken, PAIR)
    assert (verdict.action, verdict.rule) == ("alert", "sample_ratio_mismatch")
    assert (state.phase, state.canary_version, state.canary_windows) == ("canary", 2, 1)
    assert verdict.evidence["sample_ratio"]["observed_share"] == 0.1


def test_the_sequence_is_kept_as_evidence() -> None:
    sequence = {"n": 4000, "difference": 3.21, "lower": 1.5, "upper": 4.9, "blue_mse": 25.0}
    found = {**report("blue_better"), "test": "sequential", "sequence": sequence}
    verdict, _ = ctl.decide_canary(POLICY, CANARY, window(), found, PAIR)
    assert (verdict.action, verdict.evidence["test"]) == ("rollback", "sequential")
    assert verdict.evidence["sequence"]["lower"] == 1.5
    assert verdict.thresholds["test"] == "sequential"


def test_an_undecided_canary_whose_own_error_degrades_is_rolled_back_for_a_retrain() -> None:
    moved = window(per_version={"2": {"rows": 400, "rmse": 6.6, "mae": 4.0}})
    verdict, state = ctl.decide_canary(POLICY, CANARY, moved, report(None), PAIR, 5.0)
    assert (verdict.action, verdict.rule) == ("rollback", "canary_overtaken")
    # no cooldown, and this window counts as degraded: the next cycle retrains
    assert (state.phase, state.cooldown_left, state.streak) == ("watch", 0, 1)
    # within its limit, too few of its rides, or a verdict already: the usual rules
    calm = window(per_version={"2": {"rows": 400, "rmse": 6.4, "mae": 4.0}})  # within 30 %
    assert ctl.decide_canary(POLICY, CANARY, calm, report(None), PAIR, 5.0)[0].rule == "ab_pending"
    few = window(per_version={"2": {"rows": 50, "rmse": 9.0, "mae": 4.0}})
    assert ctl.decide_canary(POLICY, CANARY, few, report(None), PAIR, 5.0)[0].rule == "ab_pending"
    decided = ctl.decide_canary(POLICY, CANARY, moved, report("green_better"), PAIR, 5.0)
    assert decided[0].rule == "ab_green_better"
    assert ctl.decide_canary(POLICY, CANARY, moved, report(None), PAIR)[0].rule == "ab_pending"


def test_gate() -> None:
    assert ctl.gate(POLICY, 4.9, 5.0)[0]
    assert not ctl.gate(POLICY, 5.0, 5.0)[0]
    lenient = parse_policy("gate:\n  non_inferiority_margin: 0.05\n")
    assert ctl.gate(lenient, 5.2, 5.0)[0]
    assert ctl.gate(POLICY, 9.0, None)[0]
