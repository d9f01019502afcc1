"""`taxi-mlops demo` (what `make demo` runs) end to end, offline, in a temp TAXI_MLOPS_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))


def demo(home: Path, *args: str) -> dict:
    completed = subprocess.run(
        [CLI, "demo", "--rows", "5000", "--json", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TAXI_MLOPS_HOME": str(home)},
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    return json.loads(completed.stdout)


def test_demo_on_generated_data(tmp_path: Path) -> None:
    result = demo(tmp_path / "home")
    assert result["ok"] is True
    assert result["level0"]["val_rmse"] == pytest.approx(
        result["level1_train"]["val_rmse"], rel=0.01
    )
    assert result["level1_serve"]["prediction"]["duration"] > 0
    assert result["level1_serve"]["bad_request_status"] == 400
    assert Path(result["level1_train"]["model_path"]).is_relative_to(tmp_path / "home")
    assert not any(p.name.endswith(".pid") for p in (tmp_path / "home" / "run").glob("*"))
    level3 = result["level3"]
    assert set(level3["variants"]) == {"blue", "green"}
    assert level3["decision"] == (
        "promote" if level3["report"]["verdict"] == "green_better" else "rollback"
    )
    level4 = result["level4"]
    assert level4["promotions"] == 1
    assert level4["automated_rmse"] < level4["static_rmse"]
    assert Path(level4["files"]["plot"]).exists()


@pytest.mark.realdata
def test_demo_on_real_data(real_data: Path, tmp_path: Path) -> None:
    result = demo(tmp_path / "home", "--data-dir", str(real_data))
    assert result["validate_train"]["rows_in"] == 10_000
    assert 5 < result["level1_train"]["val_rmse"] < 7
