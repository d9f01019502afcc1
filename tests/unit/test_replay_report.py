"""A replay's pure parts: its windows, where the first shift began, and the loop against the
oracle after it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from level4_automation.replay_inject import Injection, ReplayConfig, window_edges, window_of
from level4_automation.replay_report import (
    ReplayRow,
    after_shift,
    headline,
    markdown_table,
    shift_month,
)
from level4_automation.store import Decision
from shared.errors import ConfigError


def row(month: str, champion: float, automated: float, oracle: float | None) -> ReplayRow:
    return ReplayRow(
        month=month,
        rides=100,
        refused_rides=0,
        refused_labels=0,
        valid_rides=100,
        rmse_static_level1=champion + 1,
        rmse_static_champion=champion,
        rmse_automated=automated,
        rmse_oracle=oracle,
        served_by={"1": 100},
        action="none",
        rule="healthy",
        reason="",
        blue_after=1,
        green_after=None,
    )


TABLE = [
    row("2019-02", 4.0, 4.0, 4.0),
    row("2019-03", 4.2, 4.2, 4.1),  # +5 %: within the policy's 15 %
    row("2019-04", 5.0, 5.0, 4.2),  # +25 %: the natural shift
    row("2019-05", 5.2, 4.8, 4.0),
    row("2019-06", 5.4, 4.4, 4.0),
]


def test_an_injected_slowdown_is_the_shift_even_before_the_error_shows() -> None:
    injections = [Injection("2019-03", "slower", 1.4), Injection("2019-02", "garbage", 0.3)]
    assert shift_month(TABLE, injections, 0.15) == ("2019-03", "injected")


def test_without_injection_the_static_champions_degradation_marks_the_shift() -> None:
    assert shift_month(TABLE, [], 0.15) == ("2019-04", "natural")
    assert shift_month(TABLE, [], 0.5) == (None, "none")


def test_after_the_shift_each_series_is_compared_with_the_oracle() -> None:
    after = after_shift(TABLE, [], 0.15)
    assert after is not None
    assert (after.shift_month, after.found, after.months) == ("2019-04", "natural", 2)
    assert after.automated == pytest.approx(4.6)
    assert after.oracle == pytest.approx(4.0)
    assert after.automated_over_oracle == pytest.approx(1.15)
    assert after.static_champion_over_oracle == pytest.approx(5.3 / 4.0, abs=1e-3)


def test_no_shift_or_no_month_after_it_gives_no_summary() -> None:
    assert after_shift(TABLE, [], 0.5) is None
    assert after_shift(TABLE, [Injection("2019-06", "slower", 1.4)], 0.15) is None


def test_the_table_has_an_oracle_column() -> None:
    text = markdown_table(TABLE[:1])
    assert "| RMSE oracle |" in text.splitlines()[0]
    assert "| 4.000 | 4.000 | 4.000 | v1 |" in text


def test_a_month_splits_into_equal_windows_and_every_ride_lands_in_one() -> None:
    edges = window_edges("2019-02", 4)
    assert edges == [
        "2019-02-01T00:00:00",
        "2019-02-08T00:00:00",
        "2019-02-15T00:00:00",
        "2019-02-22T00:00:00",
        "2019-03-01T00:00:00",
    ]
    assert window_edges("2019-01", 1) == ["2019-01-01T00:00:00", "2019-02-01T00:00:00"]
    pickups = pd.Series(
        pd.to_datetime(
            ["2019-01-31 23:59", "2019-02-07 23:59", "2019-02-08 00:00", "2019-03-02 00:00", None],
            format="%Y-%m-%d %H:%M",
        )
    )
    # before the month: the first window; after it, or no time: the last
    assert window_of(pickups, edges).tolist() == [0, 0, 1, 3, 3]


def test_a_replay_refuses_windows_it_cannot_fill(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--windows-per-month 29"):
        ReplayConfig(["2019-01", "2019-02"], tmp_path, windows_per_month=29)


def test_the_most_telling_window_stands_for_the_month() -> None:
    def decision(action: str) -> Decision:
        return Decision("w", action, action + "-rule", "", {})

    month = [decision(a) for a in ("canary_deployed", "wait", "promote", "alert")]
    assert headline(month).action == "promote"
    assert headline([decision("none"), decision("wait")]).action == "wait"
    assert headline([decision("none"), decision("none")]).rule == "none-rule"
    row_text = markdown_table([replace(TABLE[0], window_actions=["canary_deployed", "promote"])])
    assert "[canary_deployed -> promote]" in row_text
