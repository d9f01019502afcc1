"""What a training run records about its data in MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow

from level2_training.tracking import ensure_experiment, log_common


def test_files_of_one_month_are_recorded_as_that_months_rows(tmp_path: Path) -> None:
    """Level 4 trains on several windows of one month, one file each: MLflow writes a param
    once, so the month's rows are their sum, not the first file's (or an error)."""
    digest = {
        "content_hash": "abc",
        "inputs": [
            {"role": "train", "month": "2019-03", "rows_out": 2445},
            {"role": "train", "month": "2019-03", "rows_out": 2315},
            {"role": "train", "month": "2019-04", "rows_out": 100},
            {"role": "val", "month": "2019-04", "rows_out": 600},
        ],
    }
    where = ensure_experiment("tracking-test", (tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=where) as run:
        log_common(digest, {"git_commit": "x"})
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["data.train.2019-03.rows"] == "4760"
    assert params["data.train.2019-04.rows"] == "100"
    assert params["data.val.2019-04.rows"] == "600"
