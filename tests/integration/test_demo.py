"""`taxi-mlops demo` (what `make demo` runs) end to end, offline, in a temp TAXI_MLOPS_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import DemoRun, run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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


@pytest.mark.realdata
def test_demo_on_real_data(real_data: Path, tmp_path: Path) -> None:
    """The shortest real run (train, validate, one new month with the drift): the generated
    demo above covers the rest."""
    run = run_demo(
        tmp_path / "home",
        "--data-dir",
        str(real_data),
        "--months",
        "2019-01..2019-03",
        "--trials",
        "1",
    )
    result = run.result
    assert result["validation"]["2019-01"]["rows_in"] == 10_000
    assert 5 < result["levels"][1]["val_rmse"] < 7
    assert result["levels"][4]["eval_rmse_mean"] < result["levels"][1]["eval_rmse_mean"]
    assert (run.report_dir / "report.html").stat().st_size > 0
