"""``taxi-mlops level0``: run the data scientist's notebook, headless, top to bottom."""

from __future__ import annotations

from pathlib import Path

import click

from shared.cli_output import emit, json_option
from shared.settings import get_settings

NOTEBOOK = Path(__file__).resolve().parents[1] / "level0_notebook" / "duration-prediction.ipynb"


@click.group()
def level0() -> None:
    """Level 0 - no MLOps: a notebook, run by hand."""


@level0.command()
@click.option("--train", "train_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--val", "val_path", required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
def run(train_path: str, val_path: str) -> None:
    """Execute the notebook on two monthly files; save the executed copy and the pickle."""
    import nbformat

    from taxi_mlops.notebook import execute_notebook

    settings = get_settings()
    out_dir = settings.home / "level0"
    model_path = out_dir / "lin_reg.bin"
    nb, values = execute_notebook(
        NOTEBOOK,
        {
            "train_path": str(Path(train_path).resolve()),
            "val_path": str(Path(val_path).resolve()),
            "model_path": str(model_path),
        },
        ["rmse"],
    )
    executed = out_dir / NOTEBOOK.name
    nbformat.write(nb, executed)
    emit(
        {
            "ok": True,
            "val_rmse": values["rmse"],
            "model_path": str(model_path),
            "executed_notebook": str(executed),
        },
        [
            f"notebook ran top to bottom: validation RMSE {values['rmse']:.4f} minutes",
            f"pickle: {model_path}",
            f"executed notebook: {executed}",
        ],
    )
