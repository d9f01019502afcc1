"""The level-4 policy file: defaults, and clear errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from level4_automation.policy import (
    DEFAULT_POLICY,
    Policy,
    load_policy,
    parse_policy,
    policy_yaml,
    windows_scaled,
)
from shared.errors import ConfigError


def test_the_shipped_file_is_the_defaults() -> None:
    assert load_policy(DEFAULT_POLICY) == Policy()
    assert parse_policy("") == Policy()


def test_a_partial_file_overrides_only_what_it_names() -> None:
    policy = parse_policy("canary:\n  share: 50\n  on_inconclusive: promote\n")
    assert policy.canary.share == 50 and policy.canary.on_inconclusive == "promote"
    assert policy.quality == Policy().quality


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("canary:\n  shaer: 50\n", "canary.shaer: unknown setting"),
        ("canary:\n  share: 150\n", "canary.share: Input should be less than or equal to 100"),
        ("quality:\n  min_labels: many\n", "quality.min_labels"),
        ("retrain:\n  families: [xgboost]\n", "retrain.families: unknown ['xgboost']"),
        ("canary: [1, 2\n", "line 2"),
        ("- a\n- b\n", "expected a mapping of settings, got list"),
        ("canary:\n  on_inconclusive: maybe\n", "canary.on_inconclusive"),
    ],
)
def test_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"my\.yaml") as error:
        parse_policy(text, "my.yaml")
    assert message in str(error.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read the policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_shorter_windows_keep_the_training_span_and_the_canary_budget_in_time() -> None:
    base = parse_policy("retrain:\n  windows: 2\ncanary:\n  max_windows: 3\n")
    quarter = windows_scaled(base, 4)
    assert (quarter.retrain.windows, quarter.canary.max_windows) == (8, 12)
    # streaks and the cooldown stay in windows: a shorter window should mean a faster loop
    assert quarter.trigger == base.trigger
    assert windows_scaled(base, 1) == base
    refreshed = parse_policy("trigger:\n  refresh_windows: 2\n  cooldown_windows: 1\n")
    assert windows_scaled(refreshed, 4).trigger.refresh_windows == 8
    assert windows_scaled(refreshed, 4).trigger.cooldown_windows == 1


def test_a_written_policy_reads_back_the_same() -> None:
    policy = windows_scaled(parse_policy("canary:\n  test: welch\n  margin: 0.02\n"), 3)
    assert parse_policy(policy_yaml(policy)) == policy
