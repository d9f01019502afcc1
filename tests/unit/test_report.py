"""The comparison report from measured values: what each level shows, and how it renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import ConfigError
from taxi_mlops import report
from taxi_mlops.compare import CompareConfig, default_injection

MONTHS = ["2019-01", "2019-02", "2019-03", "2019-04", "2019-05"]


def measured(level0_val: float = 5.5) -> dict[int, report.LevelMeasure]:
    """val RMSE, new month's val RMSE, time to a model, to a served model, to roll back."""
    return {
        0: report.LevelMeasure(level0_val, 5.6, 9.0, None, None),
        1: report.LevelMeasure(5.5, 5.6, 3.0, 6.0, 2.5),
        2: report.LevelMeasure(4.3, 4.4, 30.0, None, None),
        3: report.LevelMeasure(4.3, 4.4, 30.0, 33.0, 0.2),
    }


def replay(drift_month: str | None = "2019-04") -> dict[str, Any]:
    actions = {
        "2019-02": "none",
        "2019-03": "none",
        "2019-04": "canary_deployed",
        "2019-05": "promote",
    }
    table = [
        {
            "month": m,
            "rmse_static_level1": 6.0 + i,
            "rmse_static_champion": 4.5 + i,
            "rmse_automated": 4.5 + i / 2,
            "rmse_oracle": 4.4 + i / 4,
            "action": actions[m],
        }
        for i, m in enumerate(MONTHS[1:])
    ]
    return {
        "table": table,
        "injections": [] if drift_month is None else [{"month": drift_month, "kind": "slower"}],
        "initial_champion": {"val_rmse": 4.2},
        "promotions": 1,
        "rollbacks": 0,
        "out_dir": "/tmp/replay",
        "after_shift": None
        if drift_month is None
        else {
            "shift_month": drift_month,
            "found": "injected",
            "months": 1,
            "static_level1": 9.0,
            "static_champion": 7.5,
            "automated": 6.0,
            "oracle": 5.45,
            "automated_over_oracle": 1.101,
            "static_champion_over_oracle": 1.376,
        },
    }


def test_each_level_gets_its_own_numbers_and_its_replay_line() -> None:
    result = report.build(MONTHS, measured(), replay(), data="generated")
    levels = {r.level: r for r in result.levels}
    assert [levels[i].val_rmse for i in range(5)] == [5.5, 5.5, 4.3, 4.3, 4.2]
    assert result.evaluation_months == ["2019-03", "2019-04", "2019-05"]
    # evaluation months only: 2019-03..05 are table rows 1..3
    assert levels[1].eval_rmse_mean == pytest.approx((7 + 8 + 9) / 3)
    assert levels[2].eval_rmse_mean == levels[3].eval_rmse_mean == pytest.approx(6.5)
    assert levels[4].eval_rmse_mean == pytest.approx((5.0 + 5.5 + 6.0) / 3)
    assert levels[0].eval_rmse_mean == levels[1].eval_rmse_mean  # the same model
    assert levels[3].time_to_served_s == 33.0 and levels[2].time_to_served_s is None
    assert levels[4].windows_to_served == 2  # canary in 2019-04, promoted in 2019-05


def test_level0_shares_level1s_line_only_when_their_models_agree() -> None:
    close = report.build(MONTHS, measured(level0_val=5.55), replay(), data="generated")
    assert close.levels[0].eval_rmse_mean == close.levels[1].eval_rmse_mean
    far = report.build(MONTHS, measured(level0_val=5.9), replay(), data="generated")
    assert far.levels[0].eval_rmse_mean is None


def test_without_drift_level4_has_no_promotion_delay() -> None:
    result = report.build(MONTHS, measured(), replay(drift_month=None), data="generated")
    assert result.drift_month is None
    assert result.levels[4].windows_to_served is None
    assert "none injected" in report.markdown(result)


def test_markdown_and_html_carry_the_same_numbers(tmp_path: Path) -> None:
    result = report.build(MONTHS, measured(), replay(), data="generated")
    files = report.write(result, replay(), tmp_path)
    md = Path(files["markdown"]).read_text()
    page = Path(files["html"]).read_text()
    for row in result.levels:
        assert f"| {row.level} | {row.name} | {report.num(row.val_rmse)} " in md
    assert page.count("data:image/png;base64,") == 2  # self-contained
    assert "<script" not in page and 'src="http' not in page
    assert "6.500" in md and "6.500" in page  # levels 2-3 mean over the evaluation months
    assert "automatic: 2 monitoring window(s)" in page
    # the oracle's line, column and the ratio after the shift, in both
    assert "| oracle: retrained on the previous month, every month |" in md
    assert "automated / oracle 1.101" in md and "automated / oracle 1.101" in page
    for name in ("rmse_over_time.png", "levels.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_needs_three_ordered_months(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least three months"):
        CompareConfig(months=MONTHS[:2], out_dir=tmp_path)
    with pytest.raises(ConfigError, match="in order"):
        CompareConfig(months=["2019-02", "2019-01", "2019-03"], out_dir=tmp_path)


def test_the_default_drift_lands_after_the_new_month() -> None:
    assert default_injection(MONTHS) == "2019-04:slower=1.4"
    assert default_injection(MONTHS[:3]) == "2019-03:slower=1.4"
