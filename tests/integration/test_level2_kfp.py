"""`taxi-mlops level2 kfp run`: the Kubeflow pipeline run by KFP's local runner registers what
the Prefect flow registers, on the same data, in the same registry and alias history."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.test_level2_cli import CLI, run

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("cli_prefect")]

DATA = ["--generated", "--train-months", "2019-01..2019-02", "--val-month", "2019-03"]
DATA += ["--test-month", "2019-04"]
SMALL = [*DATA, "--rows", "3000", "--trials", "2", "--models", "ridge,hgb"]


def test_kfp_and_prefect_register_the_same_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    kfp = run(home, "level2", "kfp", "run", *SMALL)
    prefect = run(home, "level2", "train", *SMALL)
    assert kfp["registered"]["version"] == 1 and kfp["registered"]["promoted"]
    assert prefect["registered"]["version"] == 2
    # the same steps on the same data: the same searches, to the last digit
    for family in ("linear", "ridge", "hgb"):
        assert kfp["families"][family]["val_rmse"] == prefect["families"][family]["val_rmse"]
        assert kfp["families"][family]["params"] == prefect["families"][family]["params"]
    assert kfp["data"]["content_hash"] == prefect["data"]["content_hash"]
    # and the same model scored on the held-back month
    assert kfp["test"] == prefect["test"] and kfp["test"]["month"] == "2019-04"
    assert "does not beat" in prefect["registered"]["decision"]
    events = run(home, "level2", "history")["events"]
    by_kfp = [e for e in events if e["actor"].endswith("via taxi-mlops level2 kfp run")]
    assert [(e["alias"], e["action"], e["to_version"]) for e in by_kfp] == [
        ("candidate", "set", 1),
        ("champion", "set", 1),
    ]
    assert (home / "kfp").is_dir()


def test_bad_data_stops_the_pipeline_with_the_steps_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.parquet"
    subprocess.run(
        [
            CLI,
            "data",
            "generate",
            "--month",
            "2019-01",
            "--rows",
            "3000",
            "--glitch-share",
            "0.6",
            "--out",
            str(bad),
        ],
        check=True,
        capture_output=True,
        env={"TAXI_MLOPS_HOME": str(home), "PATH": str(Path(CLI).parent)},
    )
    good = tmp_path / "good.parquet"
    subprocess.run(
        [CLI, "data", "generate", "--month", "2019-02", "--rows", "3000", "--out", str(good)],
        check=True,
        capture_output=True,
        env={"TAXI_MLOPS_HOME": str(home), "PATH": str(Path(CLI).parent)},
    )
    out = run(home, "level2", "kfp", "run", "--train", str(bad), "--val", str(good), ok=False)
    assert out["ok"] is False
    assert "'validate-month'" in out["error"], out["error"]
    assert "bad.parquet" in out["error"] and "rows are invalid" in out["error"], out["error"]
    assert "Nothing was registered" in out["error"]
    assert run(home, "level2", "history")["events"] == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test-month", "2019-02"], "2019-02 is a training or the validation month"),
        (["--test-month", "2019-03"], "2019-03 is a training or the validation month"),
        (["--test-month", "2019-05", "--test", "x.parquet"], "not both"),
    ],
)
def test_a_test_month_must_be_held_back(tmp_path: Path, extra: list[str], message: str) -> None:
    for command in (["level2", "train"], ["level2", "kfp", "run"]):
        completed = subprocess.run(
            [CLI, *command, *DATA[:-2], *extra],
            capture_output=True,
            text=True,
            env={"TAXI_MLOPS_HOME": str(tmp_path / "home"), "PATH": str(Path(CLI).parent)},
            check=False,
        )
        assert completed.returncode == 2, completed.stderr
        assert message in completed.stderr and "Traceback" not in completed.stderr
