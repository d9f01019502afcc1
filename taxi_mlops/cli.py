"""Entry point of ``taxi-mlops``: one group per maturity level, imported only when used.

Level groups pull in heavy libraries (sklearn, later MLflow, Prefect, Evidently); importing them
lazily keeps ``taxi-mlops --help`` and ``taxi-mlops data ...`` fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from shared.cli_output import EXIT_USER_ERROR
from shared.errors import ConfigError
from shared.settings import get_settings

#: subcommand -> (module:attribute, one-line help)
LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "data": ("taxi_mlops.data_cli:data", "Load, validate, download and generate TLC trip data."),
    "level0": ("taxi_mlops.level0_cli:level0", "Level 0: run the data scientist's notebook."),
    "level1": ("level1_devops.cli:level1", "Level 1: train with a script, serve with gunicorn."),
    "level2": (
        "level2_training.cli:level2",
        "Level 2: Prefect training pipeline, MLflow registry.",
    ),
    "level3": ("level3_deployment.cli:level3", "Level 3: blue/green serving with an A/B split."),
    "level4": (
        "level4_automation.cli:level4",
        "Level 4: drift monitoring, retraining, gated canaries.",
    ),
    "stack": (
        "taxi_mlops.stack.cli:stack",
        "Scale-out mode: PostgreSQL, S3, MLflow, Prefect and its worker, replicas behind nginx.",
    ),
    "demo": ("taxi_mlops.demo:demo", "Run the walkthrough, level by level, on one data set."),
    "compare": (
        "taxi_mlops.compare:compare",
        "Run every level on the same months; write the comparison report.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_GROUPS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS:
            module_name, attr = LAZY_GROUPS[cmd_name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in sorted(LAZY_GROUPS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log what each step does (-vv: debug).")
def main(verbose: int) -> None:
    """taxi-mlops: NYC taxi trip-duration prediction at every MLOps maturity level.

    All state lives under TAXI_MLOPS_HOME (default ./.taxi-mlops).
    """
    try:
        settings = get_settings()
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    level = {0: getattr(logging, settings.log_level), 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party chatter is not what a user of this CLI needs to see.
    for noisy in ("urllib3", "matplotlib", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
