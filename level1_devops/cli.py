"""``taxi-mlops level1``: train with a script, serve with gunicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shared.cli_output import emit, json_option
from shared.settings import get_settings

if TYPE_CHECKING:
    from flask import Flask


def threads_option(func: Any) -> Any:
    """``--threads``: gunicorn threads per worker (the level-1 and level-3 services)."""
    return click.option(
        "--threads",
        type=click.IntRange(1, 64),
        default=8,
        show_default=True,
        help="Threads per worker: a client that stalls mid-request holds one thread for at "
        "most 10 s, so a few stalled clients cannot starve the service (behind nginx, none "
        "can). 1: gunicorn's sync workers, which a stalled client blocks.",
    )(func)


@click.group()
def level1() -> None:
    """Level 1 - DevOps, no MLOps: a CI-tested script and a gunicorn service."""


@level1.command()
@click.option("--train", "train_source", required=True, help="Training month file (parquet/CSV).")
@click.option("--val", "val_source", required=True, help="Validation month file.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Model file [default: $TAXI_MLOPS_HOME/models/level1/model.joblib].",
)
@json_option
def train(train_source: str, val_source: str, out: Path | None) -> None:
    """Train the course's model (zones + distance, LinearRegression) and evaluate it."""
    from level1_devops.train import train_from_files
    from shared.data.validate import ValidationBounds  # pandas: not for level 1's other commands

    out = out or get_settings().models_dir / "level1" / "model.joblib"
    summary = train_from_files(train_source, val_source, out, ValidationBounds())
    emit(
        {"ok": True, **summary},
        [
            f"trained on {summary['train_rows']} rows, validated on {summary['val_rows']}",
            f"train RMSE {summary['train_rmse']:.3f} min, validation RMSE "
            f"{summary['val_rmse']:.3f} min (MAE {summary['val_mae']:.3f})",
            f"dropped: train {json.dumps(summary['train_dropped'])}, "
            f"val {json.dumps(summary['val_dropped'])}",
            f"model saved to {summary['model_path']}",
        ],
    )


@level1.command()
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@threads_option
@click.option("--access-log", is_flag=True, help="Log every request.")
@json_option
def serve(
    model_path: Path, host: str, port: int, workers: int, threads: int, access_log: bool
) -> None:
    """Serve a model with gunicorn: POST /predict, GET /health, GET /metrics."""
    from shared.gunicorn_runner import run, service_options
    from shared.model_io import load_model

    load_model(model_path)  # fail here, with a clear message, rather than in a worker
    settings = get_settings()
    options = service_options(
        "level1",
        settings.run_dir,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        access_log=access_log,
    )

    def factory() -> Flask:  # runs in the gunicorn master, before workers fork
        from level1_devops.app import create_app_from_file

        return create_app_from_file(
            model_path,
            compile_model=settings.serving_engine == "compiled",
            native_dir=settings.native_trees_dir,
        )

    emit(
        {
            "ok": True,
            "url": f"http://{host}:{port}",
            "pidfile": str(options.pidfile),
            "workers": workers,
        },
        [f"serving {model_path} on http://{host}:{port} with {workers} gunicorn workers"],
    )
    run(factory, options)
