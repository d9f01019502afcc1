"""``taxi-mlops compare``: every level on the same months, measured with its own CLI.

The scenario is the one every level faces: a model trained on the first month (validated on
the second) is in place, then a new month arrives. For each level this runs the commands that
level offers (``taxi-mlops levelN ...``, each with ``--json``), in one isolated
``TAXI_MLOPS_HOME`` under the output folder, and records what the commands report: validation
RMSE, the time from the new month's file to a model trained on it answering requests, the
rollback time, and, from the level-4 replay of all months, each level's RMSE month by month
through a drift. What a person must do by hand at each level is named, not timed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click

from shared.cli_options import (
    data_dir_option,
    months_option,
    rows_option,
    seed_option,
    trials_option,
)
from shared.cli_output import emit, is_json, json_option
from shared.errors import ConfigError
from shared.services import free_port, http_json, start_service
from taxi_mlops import report
from taxi_mlops.steps import Say, cli, month_files, run_cli

#: variables that would point a level at the user's own servers instead of this run's home
_SERVER_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "TAXI_MLOPS_MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "TAXI_MLOPS_PREFECT_API_URL",
)


@dataclass(frozen=True)
class CompareConfig:
    months: list[str]
    out_dir: Path
    data_dir: str | None = None  # None: generated months
    rows: int = 10_000
    seed: int = 0
    trials: int = 3
    #: ``level4 replay --inject-drift`` values; empty: no drift
    injections: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_months(self.months)


def check_months(months: list[str]) -> None:
    if len(set(months)) != len(months) or months != sorted(months):
        raise ConfigError("--months: months must be in order, each once")
    if len(months) < 3:
        raise ConfigError(
            "--months: the comparison needs at least three months (train, validate, then a "
            "new month)"
        )


def default_injection(months: list[str]) -> str:
    """Slower trips from the middle of the months after the first two: a drift to react to."""
    check_months(months)
    later = months[2:]
    return f"{later[len(later) // 2]}:slower=1.4"


class _Run:
    """The child CLIs of one comparison: one home, no user servers, raw answers kept."""

    def __init__(self, config: CompareConfig, say: Say) -> None:
        self.config, self.say = config, say
        self.home = config.out_dir / "home"
        self.raw = config.out_dir / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k not in _SERVER_VARIABLES}
        self.env["TAXI_MLOPS_HOME"] = str(self.home)
        self.logs = self.home / "logs"

    def cli(self, name: str, args: list[str]) -> dict[str, Any]:
        result = run_cli(args, lambda line: self.say(f"  {line}"), env=self.env)
        (self.raw / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        return result

    def serve(self, args: list[str], name: str) -> tuple[Any, float]:
        """Start a service (``taxi-mlops ARGS``); return it and the seconds until healthy."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.say(f"  $ taxi-mlops {' '.join(args)} --port {port} &")
        started = time.perf_counter()
        service = start_service(
            [*cli(), *args, "--port", str(port)],
            url,
            self.logs / f"compare-{name}-{port}.log",
            env=self.env,
            timeout_s=180,
        )
        return service, round(time.perf_counter() - started, 3)


RIDE = {
    "ride_id": "r1",
    "PULocationID": 161,
    "DOLocationID": 236,
    "trip_distance": 2.5,
    "pickup_datetime": "2019-02-11T08:30:00",
}
BAD_RIDE = {"PULocationID": 0, "DOLocationID": 236, "trip_distance": -3}


def _predicts(url: str) -> dict[str, Any]:
    status, answer = http_json("POST", f"{url}/predict", RIDE)
    if status != 200:
        raise ConfigError(f"{url}/predict answered {status}: {answer}")
    return answer


def _level0(run: _Run, m1: str, m2: str, m3: str) -> report.LevelMeasure:
    run.say("\n== Level 0: the notebook, run top to bottom (then again on the new month) ==")
    first = run.cli("level0_initial", ["level0", "run", "--train", m1, "--val", m2])
    run.say(f"   validation RMSE {first['val_rmse']:.3f} min; pickle at {first['model_path']}")
    new = run.cli("level0_new", ["level0", "run", "--train", m2, "--val", m3])
    run.say(f"   new month: validation RMSE {new['val_rmse']:.3f}; the pickle was overwritten")
    return report.LevelMeasure(first["val_rmse"], new["val_rmse"], new["_seconds"], None, None)


def _show_service(run: _Run, url: str) -> dict[str, Any]:
    """What a user sees from the level-1 service: an answer, a refusal, the metrics."""
    answer = _predicts(url)
    run.say(f"   $ curl -X POST {url}/predict -d '{json.dumps(RIDE)}'")
    run.say(f"   200 {json.dumps(answer)}")
    status, refusal = http_json("POST", f"{url}/predict", BAD_RIDE)
    run.say(f"   $ curl -X POST {url}/predict -d '{json.dumps(BAD_RIDE)}'")
    run.say(f"   {status} {refusal.get('error') if isinstance(refusal, dict) else refusal}")
    counters = _request_counters(url)
    run.say(f"   $ curl {url}/metrics   # Prometheus; request counters:")
    for line in counters:
        run.say(f"   {line}")
    return {"prediction": answer, "bad_request_status": status, "metrics": counters}


def _request_counters(url: str, wait_s: float = 2.0) -> list[str]:
    """The service's request counters once both requests above are in them: each worker
    writes its counts every 50 ms (shared/metrics.py), so a scrape may come first."""
    deadline = time.monotonic() + wait_s
    while True:
        _, metrics = http_json("GET", f"{url}/metrics")
        counters = [
            line
            for line in str(metrics).splitlines()
            if line.startswith("taxi_level1_requests_total")
        ]
        predict = [line for line in counters if 'endpoint="/predict"' in line]
        if len(predict) >= 2 or time.monotonic() > deadline:
            return counters
        time.sleep(0.05)


def _level1(run: _Run, m1: str, m2: str, m3: str) -> tuple[report.LevelMeasure, dict[str, Any]]:
    """Level 1's measurements, and what its service showed (an answer, a refusal, metrics)."""
    run.say("\n== Level 1: a tested training script and a gunicorn service ==")
    models = run.home / "models" / "level1"
    initial, new = models / "initial.joblib", models / "new.joblib"
    first = run.cli(
        "level1_initial", ["level1", "train", "--train", m1, "--val", m2, "--out", str(initial)]
    )
    run.say(
        f"   validation RMSE {first['val_rmse']:.3f} min (train {first['train_rmse']:.3f}); "
        f"dropped {json.dumps(first['train_dropped'])}"
    )
    service, _ = run.serve(["level1", "serve", "--model", str(initial)], "level1-initial")
    with service:
        shown = _show_service(run, service.url)
    run.say("   a new month: train again, restart the service on the new file")
    trained = run.cli(
        "level1_new", ["level1", "train", "--train", m2, "--val", m3, "--out", str(new)]
    )
    service, restart_s = run.serve(["level1", "serve", "--model", str(new)], "level1-new")
    with service:
        _predicts(service.url)
    # Rolling back is the same restart, with the previous file (if someone kept it).
    service, rollback_s = run.serve(["level1", "serve", "--model", str(initial)], "level1-back")
    with service:
        _predicts(service.url)
    served_s = round(trained["_seconds"] + restart_s, 3)
    run.say(f"   new month served after {served_s:.1f} s; rollback (restart) {rollback_s:.1f} s")
    measured = report.LevelMeasure(
        first["val_rmse"], trained["val_rmse"], trained["_seconds"], served_s, rollback_s
    )
    return measured, shown


def _level2_and_3(
    run: _Run, m1: str, m2: str, m3: str
) -> tuple[report.LevelMeasure, report.LevelMeasure]:
    trials = str(run.config.trials)
    run.say("\n== Level 2: a Prefect training pipeline, MLflow tracking and registry ==")
    first = run.cli(
        "level2_initial", ["level2", "train", "--train", m1, "--val", m2, "--trials", trials]
    )
    for family, found in first["families"].items():
        run.say(f"   {family:<7} best validation RMSE {found['val_rmse']:.3f}")
    registered = first["registered"]
    run.say(
        f"   best: {first['best']['family']}, {first['improvement_vs_baseline']:.1%} below the "
        f"baseline; registered v{registered['version']} as {', '.join(registered['aliases'])}"
    )
    run.say(f"   browse the runs: TAXI_MLOPS_HOME={run.home} taxi-mlops level2 ui")
    trained, deployed_s, rollback_s = _level3_drill(run, m2, m3, trials)
    level2 = report.LevelMeasure(
        first["best"]["val_rmse"], trained["best"]["val_rmse"], trained["_seconds"], None, None
    )
    served_s = round(trained["_seconds"] + deployed_s, 3)
    return level2, replace(level2, time_to_served_s=served_s, rollback_s=rollback_s)


def _level3_drill(run: _Run, m2: str, m3: str, trials: str) -> tuple[dict[str, Any], float, float]:
    """Train the new month's model, deploy and promote it, roll it back; how long each took."""
    run.say("\n== Level 3: blue/green from the registry; the new month's model goes live ==")
    service, _ = run.serve(["level3", "serve"], "level3")
    with service:
        blue_before = _predicts(service.url)["model_version"]
        trained = run.cli(
            "level2_new", ["level2", "train", "--train", m2, "--val", m3, "--trials", trials]
        )
        version = str(trained["registered"]["version"])
        started = time.perf_counter()
        run.cli(
            "level3_deploy",
            ["level3", "deploy", "--version", version, "--share", "10", "--url", service.url],
        )
        run.cli(
            "level3_promote",
            [
                "level3",
                "promote",
                "--reason",
                "compare: the new month's model",
                "--url",
                service.url,
            ],
        )
        # each command returns once every worker serves its change: the deployment is done
        deployed_s = time.perf_counter() - started
        served = _predicts(service.url)["model_version"]
        started = time.perf_counter()
        run.cli(
            "level3_rollback",
            ["level3", "rollback", "--reason", "compare: rollback drill", "--url", service.url],
        )
        rollback_s = round(time.perf_counter() - started, 3)
        after = _predicts(service.url)["model_version"]
    if served != version or after != blue_before:
        raise ConfigError(
            f"level 3: expected v{version} served after the promotion and v{blue_before} after "
            f"the rollback, got v{served} and v{after}"
        )
    run.say(
        f"   v{version} deployed to green, promoted to blue: served by every worker "
        f"{deployed_s:.1f} s after the deploy command; rolled back to v{blue_before} in "
        f"{rollback_s:.1f} s"
    )
    return trained, deployed_s, rollback_s


def _level4(run: _Run, files: list[str]) -> dict[str, Any]:
    config = run.config
    run.say("\n== Level 4: drift monitoring, retraining and a gated canary, with no human ==")
    drift = ", ".join(config.injections) or "no drift injected"
    run.say(
        f"   replay {config.months[0]}..{config.months[-1]} through a live level-3 service and "
        f"the monitoring loop ({drift}); the longest step"
    )
    args = ["level4", "replay", "--data-dir", str(Path(files[0]).parent)]
    args += ["--months", ",".join(config.months), "--seed", str(config.seed)]
    args += ["--out", str(config.out_dir / "replay")]
    for injection in config.injections:
        args += ["--inject-drift", injection]
    replay = run.cli("level4_replay", args)
    run.say("   month    static L1  static champion  automated     oracle  decision")
    for row in replay["table"]:
        run.say(
            f"   {row['month']}  {report.num(row['rmse_static_level1']):>9}  "
            f"{report.num(row['rmse_static_champion']):>15}  "
            f"{report.num(row['rmse_automated']):>9}  {report.num(row['rmse_oracle']):>9}  "
            f"{row['action']} ({row['rule']})"
        )
    run.say(f"   decision log: TAXI_MLOPS_HOME={replay['out_dir']} taxi-mlops level4 decisions")
    return replay


def _browser_check(page: Path, out_dir: Path, say: Say) -> dict[str, Any]:
    """Open the page as a reader would (headless Chromium) where Chromium is installed."""
    from taxi_mlops.browser import check_page, find_chromium

    if find_chromium() is None:
        say("browser check skipped: chromium is not installed (apt-get install chromium)")
        return {"checked": False, "reason": "chromium is not installed"}
    checked = check_page(page, out_dir / "screenshot.png")
    if checked.problems:
        raise ConfigError(f"{page}: the report does not render cleanly: {checked.problems}")
    say(
        f"browser check: {len(checked.images)} plots visible, no console error; "
        f"screenshot {checked.screenshot}"
    )
    return {"checked": True, "images": len(checked.images), "screenshot": checked.screenshot}


def run_compare(config: CompareConfig, say: Say = lambda line: None) -> report.Comparison:
    """Run every level and write the report; returns what the report shows."""
    started = time.perf_counter()
    config.out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(config, say)
    say(
        f"data: {config.data_dir or f'generated, {config.rows} trips/month'}; "
        f"months {config.months[0]}..{config.months[-1]}; output {config.out_dir}"
    )
    files = month_files(
        config.data_dir,
        config.months,
        config.rows,
        config.seed,
        run.home / "data",
        lambda line: say(f"  {line}"),
    )
    m1, m2, m3 = files[:3]
    validation = _validate(run, config.months[:3], files[:3])
    level1, shown = _level1(run, m1, m2, m3)
    measured = {0: _level0(run, m1, m2, m3), 1: level1}
    measured[2], measured[3] = _level2_and_3(run, m1, m2, m3)
    replay = _level4(run, files)
    built = report.build(config.months, measured, replay, data=config.data_dir or "generated")
    seconds = round(time.perf_counter() - started, 1)
    result = replace(built, validation=validation, level1_service=shown, seconds=seconds)
    files_out = report.write(result, replay, config.out_dir)
    checked = _browser_check(Path(files_out["html"]), config.out_dir, say)
    result = replace(result, files=files_out, browser_check=checked)
    (config.out_dir / "comparison.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    say(f"report: {files_out['html']} (Markdown: {files_out['markdown']})")
    return result


def _validate(run: _Run, months: list[str], files: list[str]) -> dict[str, Any]:
    """What `data validate` kept and dropped of each of the first three months."""
    run.say("\n== Data: load and validate (shared/, the code every level calls) ==")
    validation = {}
    for month, path in zip(months, files, strict=True):
        checked = run.cli(f"validate_{month}", ["data", "validate", path])
        validation[month] = {k: checked[k] for k in ("rows_in", "rows_out", "dropped")}
        run.say(
            f"   {month}: {checked['rows_out']} of {checked['rows_in']} rows valid; "
            f"dropped {json.dumps(checked['dropped'])}"
        )
    return validation


@click.command()
@data_dir_option()
@months_option("2019-01..2019-06")
@rows_option()
@seed_option()
@trials_option()
@click.option(
    "--inject-drift",
    "injections",
    multiple=True,
    help="MONTH:KIND[=VALUE] as for `level4 replay`; 'none' for no drift. Default: slower "
    "trips (x1.4) from the middle of the months after the second.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Report folder, new or empty [default: TAXI_MLOPS_HOME/reports/compare-<time>].",
)
@json_option
def compare(
    data_dir: str | None,
    months: str,
    rows: int,
    seed: int,
    trials: int,
    injections: tuple[str, ...],
    out_dir: Path | None,
) -> None:
    """Run every level on the same months; write a Markdown and an HTML comparison report."""
    from shared.data.sources import month_range
    from shared.settings import get_settings

    folder = out_dir or get_settings().reports_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    if folder.exists() and any(folder.iterdir()):
        raise click.BadParameter(f"{folder} is not empty: pick a new folder", param_hint="--out")
    chosen = [] if list(injections) == ["none"] else list(injections)
    month_list = month_range(months)
    config = CompareConfig(
        months=month_list,
        out_dir=folder.resolve(),
        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
        rows=rows,
        seed=seed,
        trials=trials,
        injections=chosen or ([] if injections else [default_injection(month_list)]),
    )

    def progress(line: str) -> None:
        if not is_json():
            click.echo(line, err=True)

    result = run_compare(config, progress)
    lines = [
        *report.summary_lines(result),
        f"report: {result.files['html']}",
        f"        {result.files['markdown']}",
    ]
    emit(result.to_dict(), lines)
