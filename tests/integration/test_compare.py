"""`taxi-mlops compare` end to end on generated months: every level runs, the report's numbers
are the ones the levels' own commands report, and the HTML renders in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taxi_mlops.browser import find_chromium
from tests.integration.conftest import DemoRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))


def cli(home: Path, *args: str, timeout: float = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    completed = subprocess.run(
        [CLI, *args, "--json"],
        capture_output=True,
        text=True,
        env={**env, "TAXI_MLOPS_HOME": str(home)},
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    return json.loads(completed.stdout)


def test_demo_on_generated_data(demo_generated: DemoRun) -> None:
    run, result = demo_generated, demo_generated.result
    assert run.report_dir.is_relative_to(run.home)
    for heading in (
        "== Data:",
        "== Level 0:",
        "== Level 1:",
        "== Level 2:",
        "== Level 3:",
        "== Level 4:",
        "== Summary",
    ):
        assert heading in run.stdout
    assert "$ taxi-mlops level1 train" in run.stdout  # the commands a reader would type
    service = result["level1_service"]
    assert service["prediction"]["duration"] > 0 and service["bad_request_status"] == 400
    assert result["levels"][0]["val_rmse"] == pytest.approx(
        result["levels"][1]["val_rmse"], rel=0.01
    )
    assert result["levels"][4]["promotions"] >= 1
    assert not any(p.name.endswith(".pid") for p in run.home.rglob("*.pid"))


@pytest.fixture
def compared(demo_generated: DemoRun) -> tuple[dict, Path]:
    """`make demo` is the comparison run, narrated: its report is checked here."""
    return demo_generated.result, demo_generated.report_dir


def test_every_level_is_in_the_report(compared: tuple[dict, Path]) -> None:
    result, out = compared
    levels = {r["level"]: r for r in result["levels"]}
    assert sorted(levels) == [0, 1, 2, 3, 4]
    assert levels[1]["time_to_served_s"] > levels[1]["time_to_model_s"] > 0
    assert levels[3]["time_to_served_s"] > levels[3]["time_to_model_s"] > 0
    assert levels[0]["time_to_served_s"] is None and levels[2]["time_to_served_s"] is None
    assert 0 < levels[3]["rollback_s"] < 10
    assert levels[4]["promotions"] >= 1 and levels[4]["windows_to_served"] >= 1
    assert levels[4]["eval_rmse_mean"] < levels[2]["eval_rmse_mean"] < levels[1]["eval_rmse_mean"]
    # the replay has its own stores, but Prefect's run history stays in the caller's home
    assert (out / "replay" / "level4").is_dir() and not (out / "replay" / "prefect").exists()
    for name in ("report.md", "report.html", "rmse_over_time.png", "levels.png", "comparison.json"):
        assert (out / name).stat().st_size > 0
    page = (out / "report.html").read_text()
    assert "<script" not in page and page.count("data:image/png;base64,") == 2


def test_the_numbers_are_the_levels_own(compared: tuple[dict, Path], tmp_path: Path) -> None:
    """Run the levels' commands again, by hand, on the same files: same numbers."""
    result, out = compared
    data = out / "home" / "data"
    m1, m2 = (str(data / f"yellow_tripdata_2019-0{i}.parquet") for i in (1, 2))
    home = tmp_path / "by-hand"
    level0 = cli(home, "level0", "run", "--train", m1, "--val", m2)
    level1 = cli(
        home, "level1", "train", "--train", m1, "--val", m2, "--out", str(home / "m.joblib")
    )
    levels = {r["level"]: r for r in result["levels"]}
    assert levels[0]["val_rmse"] == level0["val_rmse"]
    assert levels[1]["val_rmse"] == level1["val_rmse"]
    assert (
        levels[2]["val_rmse"]
        == json.loads((out / "raw" / "level2_initial.json").read_text())["best"]["val_rmse"]
    )
    # the monthly lines are the replay's own table, and the report shows them
    table = json.loads((out / "replay" / "table.json").read_text())
    markdown = (out / "report.md").read_text()
    for mine, theirs in zip(result["monthly"], table, strict=True):
        for key in ("rmse_static_level1", "rmse_static_champion", "rmse_automated", "rmse_oracle"):
            assert mine[key] == theirs[key]
            assert f"{theirs[key]:.3f}" in markdown
    for row in result["levels"]:
        if row["val_rmse"] is not None:
            assert f"{row['val_rmse']:.3f}" in markdown


@pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (.ci/run installs it)"
)
def test_the_html_report_renders_in_chromium(compared: tuple[dict, Path]) -> None:
    result, out = compared
    check = result["browser_check"]
    assert check["checked"] is True and check["images"] == 2
    shot = Path(check["screenshot"])
    assert shot.parent == out and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_get_a_clear_error(tmp_path: Path) -> None:
    completed = subprocess.run(
        [CLI, "compare", "--months", "2019-01..2019-02", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TAXI_MLOPS_HOME": str(tmp_path / "home")},
    )
    assert completed.returncode == 2
    assert "at least three months" in completed.stderr and "Traceback" not in completed.stderr
