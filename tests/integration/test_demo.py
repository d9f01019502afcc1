"""`taxi-mlops demo` (what `make demo` runs) on real months, in a temp TAXI_MLOPS_HOME. The run on
generated months is checked in test_compare.py, which shares it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import run_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.realdata
def test_demo_on_real_data(real_data: Path, tmp_path: Path) -> None:
    """The shortest real run (train, validate, one new month with the drift): the generated
    demo (test_compare.py) covers the rest."""
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
