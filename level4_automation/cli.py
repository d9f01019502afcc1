"""``taxi-mlops level4``: monitor, schedule, read the audit log, replay months end to end."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from level3_deployment.cli import url_option
from level4_automation.replay_inject import DEFAULT_WINDOWS_PER_MONTH, MAX_WINDOWS_PER_MONTH
from shared.cli_options import data_dir_option, months_option, rows_option, seed_option
from shared.cli_output import emit, fail, json_option
from shared.data.sources import GENERATED, month_range
from shared.errors import ConfigError
from shared.settings import get_settings
from shared.statedb import StateLocations, state_locations

if TYPE_CHECKING:  # the loop imports pandas and the models: loaded by the commands that run it
    from level4_automation.loop import CycleResult


@click.group()
def level4() -> None:
    """Level 4 - automation: drift and error monitoring, retraining, gated canaries."""


def _state() -> StateLocations:
    settings = get_settings()
    return state_locations(settings.home, settings.state_url)


def _policy_option(func: Any) -> Any:
    return click.option(
        "--policy",
        "policy_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Policy YAML [default: level4_automation/policy.yaml].",
    )(func)


def _iso(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=None).isoformat()
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date-time", param_hint=name
        ) from None


def _decision_lines(result: CycleResult) -> list[str]:
    window, decision = result.window, result.decision
    rmse = "-" if window.rmse is None else f"{window.rmse:.3f}"
    return [
        f"window {window.start} .. {window.end}: {window.rows} predictions, "
        f"{window.valid_labelled} valid labels, RMSE {rmse}, drift share "
        f"{window.drift_share:.2f}, invalid {window.invalid_share:.1%}",
        f"decision: {decision.action} ({decision.rule}): {decision.reason}",
        *(f"report: {path}" for path in window.reports.values()),
    ]


@level4.command()
@click.option("--start", help="Window start (ISO 8601, UTC event time).")
@click.option("--end", help="Window end (exclusive).")
@click.option(
    "--window-hours",
    type=click.FloatRange(min=0.01),
    default=24.0,
    show_default=True,
    help="Without --start/--end: the last N hours.",
)
@_policy_option
@url_option
@json_option
def monitor(
    start: str | None, end: str | None, window_hours: float, policy_path: str | None, url: str
) -> None:
    """Run the monitoring flow once: measure a window, decide, act, record the decision."""
    if (start is None) != (end is None):
        raise click.UsageError("--start and --end go together")
    start, end = _iso(start, "--start"), _iso(end, "--end")
    if start is not None and end is not None and end <= start:
        raise click.UsageError("--end must be after --start")
    if policy_path is not None:
        from level4_automation.policy import load_policy

        load_policy(Path(policy_path))  # a broken policy fails before Prefect starts
    from level2_training import runtime

    runtime.configure(get_settings())
    prefect_ready = runtime.boot_embedded_prefect()  # boots while the flow's libraries import
    from level4_automation.flow import monitoring_flow

    runtime.hide_expected_tracebacks()
    prefect_ready()
    result = monitoring_flow(
        start=start,
        end=end,
        window_hours=window_hours,
        policy_path=policy_path,
        level3_url=url,
    )
    emit({"ok": True, **result.to_dict()}, _decision_lines(result))


@level4.command()
@click.option("--cron", default="0 * * * *", show_default=True, help="When to run (UTC).")
@click.option(
    "--window-hours",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Each run looks at the last N hours (match it to the schedule).",
)
@click.option("--name", default="level4-monitoring", show_default=True)
@_policy_option
@url_option
def schedule(cron: str, window_hours: float, name: str, policy_path: str | None, url: str) -> None:
    """Serve the monitoring flow as a Prefect deployment on a cron schedule (runs until
    stopped; with PREFECT_API_URL set, runs show in the Prefect UI)."""
    from level2_training import runtime

    settings = get_settings()
    runtime.configure(settings)
    if policy_path:
        from level4_automation.policy import load_policy

        try:
            load_policy(Path(policy_path))  # a broken policy fails now, not at the first run
        except ConfigError as exc:
            fail(str(exc))
    from level4_automation.flow import monitoring_flow

    runtime.hide_expected_tracebacks()
    click.echo(
        f"serving deployment {name!r} (cron {cron!r}, last {window_hours:g} h); Ctrl-C stops"
    )
    monitoring_flow.serve(
        name=name,
        cron=cron,
        parameters={
            "window_hours": window_hours,
            "policy_path": str(Path(policy_path).resolve()) if policy_path else None,
            "level3_url": url,
        },
    )


@level4.command()
@click.option("--last", type=click.IntRange(min=1), default=None, help="Only the last N.")
@json_option
def decisions(last: int | None) -> None:
    """The audit log: every decision with its evidence, thresholds and the rule that fired."""
    from level4_automation.store import MonitoringStore

    where = _state()
    if not where.present("loop"):
        emit({"ok": True, "decisions": []}, ["no decisions yet (run `taxi-mlops level4 monitor`)"])
        return
    rows = MonitoringStore(where.loop).decisions()
    if last:
        rows = rows[-last:]
    lines = [
        f"{d['window_start']:<20} {d['action']:<16} {d['rule']:<22} {d['reason']}" for d in rows
    ]
    emit({"ok": True, "decisions": rows}, lines or ["no decisions yet"])


@level4.command()
@json_option
def windows() -> None:
    """The monitoring time series: one line per window."""
    from level4_automation.store import MonitoringStore

    where = _state()
    found = MonitoringStore(where.loop).windows() if where.present("loop") else []

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        f"{w.start:<20} rows {w.rows:<7} labels {w.valid_labelled:<7} RMSE {f(w.rmse):<7} "
        f"drift {w.drift_share:.2f} prediction drift {f(w.prediction_drift_score)} "
        f"invalid {w.invalid_share:.1%}"
        for w in found
    ]
    emit({"ok": True, "windows": [w.to_dict() for w in found]}, lines or ["no windows yet"])


@level4.command()
@data_dir_option("Folder of TLC monthly files; without it, generated months.", must_exist=False)
@months_option(help="e.g. 2019-01..2020-02 (the first trains).", required=True)
@click.option(
    "--inject-drift",
    "injections",
    multiple=True,
    help="MONTH:KIND[=VALUE]; KIND is slower (=1.4), garbage (=0.3) or bad-candidate.",
)
@rows_option()
@seed_option()
@_policy_option
@click.option(
    "--windows-per-month",
    type=click.IntRange(1, MAX_WINDOWS_PER_MONTH),
    default=DEFAULT_WINDOWS_PER_MONTH,
    show_default=True,
    help="Monitoring cycles per month: labels arrive, and the loop decides, this often. The "
    "policy's retrain.windows and canary.max_windows are scaled to keep their span in time.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Replay folder (must be new or empty) [default: TAXI_MLOPS_HOME/replays/<time>].",
)
@json_option
def replay(
    data_dir: str | None,
    months: str,
    injections: tuple[str, ...],
    rows: int,
    seed: int,
    policy_path: str | None,
    windows_per_month: int,
    out_dir: str | None,
) -> None:
    """Replay months through a live level-3 service and the level-4 loop; write the decision
    log, a per-month RMSE table (static level-1 model vs the automated system) and a plot."""
    from level4_automation.replay import Injection, ReplayConfig, run_replay

    settings = get_settings()
    if data_dir is not None and not Path(data_dir).is_dir():
        raise click.BadParameter(f"{data_dir}: no such folder", param_hint="--data-dir")
    if policy_path is not None:
        from level4_automation.policy import load_policy

        load_policy(Path(policy_path))
    folder = _replay_folder(settings.home, out_dir)
    config = ReplayConfig(
        months=month_range(months),
        out_dir=folder.resolve(),
        data_dir=str(Path(data_dir).resolve()) if data_dir else GENERATED,
        rows=rows,
        injections=[Injection.parse(i) for i in injections],
        seed=seed,
        policy_path=Path(policy_path).resolve() if policy_path else None,
        windows_per_month=windows_per_month,
    )
    _enter_replay_world(config.out_dir)
    from shared.cli_output import is_json

    result = run_replay(config, get_settings(), None if is_json() else click.echo)
    emit({"ok": True, **result}, _replay_lines(result, config.out_dir))


def _replay_folder(home: Path, out_dir: str | None) -> Path:
    """The replay's folder: new or empty (made here)."""
    folder = (
        Path(out_dir) if out_dir else home / "replays" / datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    if folder.exists() and any(folder.iterdir()):
        raise click.BadParameter(f"{folder} is not empty: pick a new folder", param_hint="--out")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _enter_replay_world(out_dir: Path) -> None:
    """The replay is its own world: its own home, registry and stores, whatever the user's are
    (a shared state database included). Only Prefect's flow-run history stays the caller's: a
    new Prefect database would cost a migration (~10 s) per replay, and the runs belong in the
    caller's history anyway."""
    os.environ.setdefault("PREFECT_HOME", str(get_settings().prefect_home))
    os.environ["TAXI_MLOPS_HOME"] = str(out_dir)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("TAXI_MLOPS_STATE_DB_URL", None)
    from level2_training import runtime

    runtime.configure(get_settings())
    runtime.hide_expected_tracebacks()
    # nothing here to overlap with the boot: started (a new home seeded first) and waited for
    runtime.boot_embedded_prefect()()


def _replay_lines(result: dict[str, Any], out_dir: Path) -> list[str]:
    lines = [
        "",
        Path(result["files"]["table"]).read_text(),
        f"promotions {result['promotions']}, rollbacks {result['rollbacks']}, "
        f"retrainings {result['retrains']}; {result['seconds']:.0f} s",
        f"plot: {result['files']['plot']}",
        f"decision log: {result['files']['decisions']} (or TAXI_MLOPS_HOME={out_dir} "
        "taxi-mlops level4 decisions)",
        f"Evidently reports: {result['files']['reports']}",
    ]
    after = result["after_shift"]
    if after:
        lines.insert(
            2,
            f"mean RMSE over the {after['months']} months after the {after['found']} shift of "
            f"{after['shift_month']}: static level-1 {after['static_level1']}, static champion "
            f"{after['static_champion']}, automated {after['automated']}, oracle "
            f"{after['oracle']}; automated / oracle {after['automated_over_oracle']}, static "
            f"champion / oracle {after['static_champion_over_oracle']}",
        )
    return lines
