"""``taxi-mlops demo``: the walkthrough, level 0 to level 4, on one data set, offline.

It is the comparison run (:mod:`taxi_mlops.compare`) narrated: each step runs the same
``taxi-mlops`` command a reader would type (printed before it runs), so the demo also checks
that the documented commands work, and it ends with the comparison report.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from shared.cli_options import (
    data_dir_option,
    months_option,
    rows_option,
    seed_option,
    trials_option,
)
from shared.cli_output import emit, is_json, json_option
from shared.data.sources import month_range
from shared.settings import get_settings
from taxi_mlops import report
from taxi_mlops.compare import CompareConfig, default_injection, run_compare

MONTHS = "2019-01..2019-05"


def _say(text: str = "") -> None:
    if not is_json():
        click.echo(text)


def summary(result: report.Comparison) -> list[str]:
    """The closing table: per level, its validation RMSE, its RMSE through the drift, and how
    a new month reaches users."""
    lines = ["", "== Summary: what each level buys ==", *report.summary_lines(result)]
    lines += [
        f"done in {result.seconds} s.",
        f"Comparison report: {result.files['html']}",
        f"                   {result.files['markdown']}",
        "Walkthroughs: level0_notebook/, level1_devops/, level2_training/, level3_deployment/, "
        "level4_automation/ (README.md in each)",
    ]
    return lines


@click.command()
@data_dir_option()
@months_option(MONTHS)
@rows_option()
@seed_option(42)
@trials_option()
@json_option
def demo(data_dir: str | None, months: str, rows: int, seed: int, trials: int) -> None:
    """Run levels 0 to 4 end to end, show what each did, and write the comparison report."""
    settings = get_settings()
    month_list = month_range(months)
    out = settings.reports_dir / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    config = CompareConfig(
        months=month_list,
        out_dir=out.resolve(),
        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
        rows=rows,
        seed=seed,
        trials=trials,
        injections=[default_injection(month_list)],
    )
    source = data_dir or f"generated ({rows} trips/month, seed {seed})"
    _say(f"taxi-mlops demo: data = {source}; everything under {out}")
    result = run_compare(config, _say)
    emit(result.to_dict(), summary(result))
