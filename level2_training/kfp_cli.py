"""``taxi-mlops level2 kfp``: the level-2 pipeline in Kubeflow Pipelines: compile it to IR YAML,
or run it on this machine with KFP's local subprocess runner."""

from __future__ import annotations

import contextlib
import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import click

from level2_training.cli import TrainingOptions, level2, result_lines, training_options
from level2_training.results import TrainingResult
from shared.cli_output import emit, fail, json_option
from shared.errors import TaxiMlopsError
from shared.settings import get_settings

#: the compiled pipeline kept in the repository (a test compiles again and compares)
COMMITTED_YAML = Path(__file__).parent / "kfp" / "pipeline.yaml"


@level2.group("kfp")
def kfp_group() -> None:
    """The same training pipeline as Kubeflow Pipelines (KFP v2) components."""


@kfp_group.command("compile")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="Where to write the pipeline's IR YAML.",
)
@click.option(
    "--image",
    default=None,
    help="The image every component runs in: the platform Dockerfile's, from a registry "
    "the cluster can pull [default: taxi-mlops:latest].",
)
@click.option(
    "--package",
    "packages",
    multiple=True,
    help="A pip requirement installed before each component runs (repeatable).",
)
@json_option
def compile_command(out: Path, image: str | None, packages: tuple[str, ...]) -> None:
    """Write the pipeline's IR YAML, which a KFP endpoint runs (kfp.Client(host=...))."""
    from level2_training.kfp_pipeline import DEFAULT_IMAGE, compile_pipeline

    if not out.parent.is_dir():
        raise click.BadParameter(f"{out.parent} is not a folder", param_hint="--out")
    compile_pipeline(str(out), image or DEFAULT_IMAGE, packages)
    emit(
        {"ok": True, "path": str(out), "image": image or DEFAULT_IMAGE},
        [f"wrote {out} (components run in {image or DEFAULT_IMAGE})"],
    )


@kfp_group.command("run")
@training_options
@json_option
def run_command(options: TrainingOptions) -> None:
    """Run the pipeline here with KFP's local runner (a subprocess per component); register
    the best model with the same gate and alias history as `level2 train`."""
    from level2_training import runtime

    options.families()  # an unknown family fails before anything starts
    settings = get_settings()
    runtime.configure(settings)
    config = options.config(settings, False, "level2 kfp run")
    root = settings.home / "kfp"
    try:
        result = _run_locally(config, root)
    except TaxiMlopsError as exc:
        fail(f"{exc} Nothing was registered.")
    emit({"ok": True, **result.to_dict()}, [*result_lines(result), f"ran with KFP under {root}"])


def _run_locally(config: Any, root: Path) -> TrainingResult:
    """Run the pipeline with the subprocess runner; the components' output goes to a log file
    (stdout is the command's own), named in the error when a step fails."""
    from kfp import local

    from level2_training import kfp_steps
    from level2_training.kfp_pipeline import build_pipeline
    from shared.errors import PipelineRunError

    root.mkdir(parents=True, exist_ok=True)
    run_key = uuid.uuid4().hex
    log = root / f"run-{run_key}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    arguments = kfp_steps.pipeline_arguments(config, run_key, "")
    with (
        log.open("w", encoding="utf-8") as out,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(out),
        warnings.catch_warnings(),
    ):
        # the local runner warns that an image it does not use may not be a Python one
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            build_pipeline()(**arguments)
        except RuntimeError as exc:
            raise PipelineRunError(_failure(exc, log)) from None
    found = kfp_steps.parent_run(config.experiment, run_key)
    import mlflow

    from level2_training.steps import RESULT_ARTIFACT

    return TrainingResult.from_dict(
        mlflow.artifacts.load_dict(f"runs:/{found.info.run_id}/{RESULT_ARTIFACT}")
    )


#: the last line of a Python traceback: the exception's class and message
_RAISED = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def _failure(exc: RuntimeError, log: Path) -> str:
    """Which step failed (KFP's message, without its terminal colours) and why (the last
    exception a component raised, from the log), and where the whole log is."""
    step = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).rstrip(".")
    step = step.split("Inner task failed: ")[-1]
    raised = [
        m for line in log.read_text(encoding="utf-8").splitlines() if (m := _RAISED.match(line))
    ]
    why = f": {raised[-1].group(1)}: {raised[-1].group(2)}" if raised else ""
    return f"the KFP pipeline failed in {step}{why} (log: {log})."
