"""The level-0 notebook runs top to bottom, headless, and reports the course's number."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from level1_devops.train import train_from_files
from shared import reference
from shared.data.generator import generate_month
from shared.data.validate import ValidationBounds
from taxi_mlops.level0_cli import NOTEBOOK
from taxi_mlops.notebook import NotebookError, execute_notebook
from tests.conftest import real_month

pytestmark = pytest.mark.integration


def run(train: Path, val: Path, tmp_path: Path) -> float:
    params = {
        "train_path": str(train),
        "val_path": str(val),
        "model_path": str(tmp_path / "lin_reg.bin"),
    }
    _, values = execute_notebook(NOTEBOOK, params, ["rmse"])
    assert (tmp_path / "lin_reg.bin").stat().st_size > 0
    return values["rmse"]


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.realdata
def test_real_months_same_rmse_as_course_and_level1(real_data: Path, tmp_path: Path) -> None:
    train, val = real_month(real_data, "2019-01"), real_month(real_data, "2019-02")
    notebook_rmse = run(train, val, tmp_path)
    assert notebook_rmse == pytest.approx(
        reference.train_and_validate(train, val)["val_rmse"], rel=1e-9
    )
    level1 = train_from_files(str(train), str(val), tmp_path / "m.joblib", ValidationBounds())
    assert level1["val_rmse"] == pytest.approx(notebook_rmse, rel=0.01)


def test_generated_months(tmp_path: Path) -> None:
    paths = []
    for i, month in enumerate(["2019-01", "2019-02"]):
        path = tmp_path / f"yellow_tripdata_{month}.parquet"
        generate_month(month, 5000, seed=i).to_parquet(path)
        paths.append(path)
    assert run(*paths, tmp_path) == pytest.approx(
        reference.train_and_validate(*paths)["val_rmse"], rel=1e-9
    )


def test_a_failing_cell_is_reported(tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match="a cell failed"):
        run(tmp_path / "missing.parquet", tmp_path / "missing2.parquet", tmp_path)
