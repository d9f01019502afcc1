"""The closed loop end to end: `taxi-mlops level4 replay` streams months through a real level-3
service (gunicorn), posts labels, and runs the monitoring flow (Prefect, Evidently, MLflow) per
month. Each replay has its own home, so these are independent of each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.services import free_port, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("cli_prefect")]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))


def home_env(home: Path) -> dict[str, str]:
    """A home's own embedded stores (the test session points MLFLOW_TRACKING_URI elsewhere)."""
    return {
        "TAXI_MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
    }


def run(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **home_env(home)},
        timeout=timeout,
        check=False,
    )


def replay(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / name
    completed = run(
        tmp_path / "home", "level4", "replay", "--rows", "6000", "--out", str(out), "--json", *args
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return json.loads(completed.stdout)


def actions(result: dict) -> dict[str, str]:
    return {row["month"]: row["action"] for row in result["table"]}


def test_injected_slowdown_is_detected_retrained_and_promoted_deterministically(
    tmp_path: Path,
) -> None:
    # one window a month: each month's decision is its one cycle's
    args = (
        "--months",
        "2019-01..2019-04",
        "--inject-drift",
        "2019-02:slower=1.5",
        "--windows-per-month",
        "1",
    )
    first = replay(tmp_path, "a", *args)
    steps = actions(first)
    assert (steps["2019-02"], steps["2019-03"]) == ("canary_deployed", "promote"), first["table"]
    assert steps["2019-04"] in ("none", "alert")  # a drift warning at most: no new retraining
    last = first["table"][-1]
    assert last["blue_after"] == 2
    # after the promotion the loop's answers are clearly better than never retraining
    assert last["rmse_automated"] < 0.9 * last["rmse_static_champion"]
    assert last["rmse_automated"] < 0.9 * last["rmse_static_level1"]
    # the oracle retrains on the slowed February at once: better than the static champion in
    # March, while the loop still serves the old blue beside its canary
    march = first["table"][1]
    assert march["rmse_oracle"] < 0.9 * march["rmse_static_champion"]
    after = first["after_shift"]
    assert (after["shift_month"], after["found"], after["months"]) == ("2019-02", "injected", 2)
    assert after["automated_over_oracle"] == pytest.approx(
        after["automated"] / after["oracle"], abs=1e-3
    )
    retrain = first["decisions"][0]
    assert retrain["rule"] == "gate_passed"
    assert retrain["details"]["evidence"]["rmse_ratio"] > 1.15
    assert (
        retrain["details"]["outcome"]["candidate_rmse"]
        < (retrain["details"]["outcome"]["champion_rmse"])
    )
    assert Path(first["files"]["plot"]).stat().st_size > 10_000
    assert "| 2019-03 |" in Path(first["files"]["table"]).read_text()
    reports = Path(first["files"]["reports"])
    assert len(list(reports.glob("*/drift.html"))) == 3

    # run again up to the promotion: the same retraining, gate, canary and verdict, to the digit
    again = ("--months", "2019-01..2019-03", *args[2:])  # the same drift and windows
    second = replay(tmp_path, "b", *again)
    assert len(second["decisions"]) == 2
    assert second["decisions"] == first["decisions"][:2]

    # the audit log is readable with the CLI, from the replay's home
    logged = run(Path(first["out_dir"]), "level4", "decisions", "--json")
    assert logged.returncode == 0, logged.stderr
    rows = json.loads(logged.stdout)["decisions"]
    assert [d["action"] for d in rows] == [d["action"] for d in first["decisions"]]
    windows = json.loads(run(Path(first["out_dir"]), "level4", "windows", "--json").stdout)
    assert len(windows["windows"]) == 3


def test_with_weekly_windows_the_canary_is_judged_within_the_month(tmp_path: Path) -> None:
    """Four cycles a month: the slowdown is caught in February's first week, its canary is
    promoted by the sequential test before February ends, and the loop serves the new model
    for part of the month itself."""
    args = ("--months", "2019-01..2019-03", "--inject-drift", "2019-02:slower=1.5")
    result = replay(tmp_path, "weekly", *args, "--windows-per-month", "4")
    february = result["table"][0]
    steps = february["window_actions"]
    assert len(steps) == 4 and steps[0] == "canary_deployed", steps
    assert "promote" in steps and february["action"] == "promote"
    assert february["rmse_automated"] < 0.97 * february["rmse_static_champion"]
    promoted = next(d for d in result["decisions"] if d["action"] == "promote")
    assert promoted["details"]["evidence"]["test"] == "sequential"
    assert promoted["details"]["evidence"]["sequence"]["upper"] < 0
    assert result["windows_per_month"] == 4 and len(result["decisions"]) == 8
    written = (Path(result["out_dir"]) / "policy.yaml").read_text()
    assert "windows: 4" in written and "max_windows: 8" in written  # scaled to a month


@pytest.fixture(scope="module")
def calm_replay(tmp_path_factory: pytest.TempPathFactory, cli_prefect: str) -> dict:
    """Four months without drift; its home is also the live service's in the monitor test."""
    return replay(tmp_path_factory.mktemp("calm"), "calm", "--months", "2019-01..2019-04")


def test_no_drift_no_promotion(calm_replay: dict) -> None:
    result = calm_replay
    assert result["promotions"] == 0, result["table"]
    assert set(actions(result).values()) <= {"none", "alert"}


def test_a_garbage_month_raises_a_data_quality_alert_and_promotes_nothing(
    tmp_path: Path,
) -> None:
    result = replay(
        tmp_path, "garbage", "--months", "2019-01..2019-03", "--inject-drift", "2019-02:garbage"
    )
    february = result["table"][0]
    assert february["refused_rides"] > 800 and february["refused_labels"] > 800
    decision = result["decisions"][0]
    assert (decision["action"], decision["rule"]) == ("alert", "data_quality")
    assert decision["details"]["evidence"]["invalid_share"] > 0.05
    assert result["promotions"] == 0
    assert all(row["blue_after"] == 1 for row in result["table"])


def test_a_deliberately_bad_canary_is_rolled_back_by_the_ab_rule(tmp_path: Path) -> None:
    result = replay(
        tmp_path, "bad", "--months", "2019-01..2019-02", "--inject-drift", "2019-02:bad-candidate"
    )
    decision = result["decisions"][0]
    assert (decision["action"], decision["rule"]) == ("rollback", "ab_blue_better")
    assert decision["details"]["outcome"]["adopted_canary"] == 2
    variants = decision["details"]["evidence"]["variants"]
    assert variants["green"]["rmse"] > variants["blue"]["rmse"]
    assert result["table"][0]["blue_after"] == 1 and result["table"][0]["green_after"] == 2


def test_monitor_command_against_a_live_service(calm_replay: dict, tmp_path: Path) -> None:
    """`level4 monitor` (the scheduled flow's body) on a window of a finished replay."""
    home = Path(calm_replay["out_dir"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_service(
        [CLI, "level3", "serve", "--port", str(port)],
        url,
        tmp_path / "serve.log",
        env=home_env(home),
        timeout_s=120,
    ):
        window = ("--start", "2019-02-01T00:00:00", "--end", "2019-03-01T00:00:00")
        completed = run(home, "level4", "monitor", *window, "--url", url, "--json")
        assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
        answer = json.loads(completed.stdout)
        assert answer["window"]["rows"] == 6000
        assert answer["decision"]["action"] in ("none", "alert")
        bad = run(home, "level4", "monitor", "--start", "2019-02-01", "--url", url)
        assert bad.returncode == 2 and "--start and --end go together" in bad.stderr


def test_bad_replay_arguments_are_named(tmp_path: Path) -> None:
    completed = run(
        tmp_path, "level4", "replay", "--months", "2019-01..2019-02", "--inject-drift", "x"
    )
    assert completed.returncode == 2 and "--inject-drift 'x'" in completed.stderr
    policy = tmp_path / "p.yaml"
    policy.write_text("canary:\n  shaer: 5\n")
    completed = run(
        tmp_path, "level4", "replay", "--months", "2019-01..2019-02", "--policy", str(policy)
    )
    assert completed.returncode == 2 and "canary.shaer: unknown setting" in completed.stderr
