"""``taxi-mlops level2``: the training pipeline, the registry's alias history, the MLflow UI."""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from level2_training.results import FlowRunRef, TrainingResult
from shared.cli_options import data_dir_option, rows_option, seed_option, trials_option
from shared.cli_output import emit, fail, json_option
from shared.errors import ConfigError, TaxiMlopsError
from shared.family_names import FAMILY_NAMES
from shared.settings import get_settings

if TYPE_CHECKING:
    from shared.data.sources import MonthSource

# The data and model modules (pandas, scikit-learn: ~2.5 CPU-s) are imported where a command
# needs them, so that level 2's other commands (status, history, promote, ...) start in ~0.5 s.


@click.group()
def level2() -> None:
    """Level 2 - automated training: Prefect pipeline, MLflow tracking and registry."""


@dataclass(frozen=True)
class TrainingOptions:
    """The data and model options of a training run, as ``level2 train`` and ``level2 kfp
    run`` both take them (see :func:`training_options`)."""

    train_files: tuple[str, ...]
    val_file: str | None
    data_dir: str | None
    data_url: str | None
    generated: bool
    train_months: str | None
    val_month: str | None
    test_file: str | None
    test_month: str | None
    rows: int
    models: str
    trials: int
    seed: int
    margin: float | None

    def families(self) -> list[str]:
        """``--models`` as family names; an unknown name fails here, before anything starts."""
        from shared.models import get_family

        families = [m.strip() for m in self.models.split(",") if m.strip()]
        for family in families:
            get_family(family)
        return families

    @property
    def location(self) -> str | None:
        """Where the months are: a folder, a base URL or the generator (None: files)."""
        from shared.data.sources import GENERATED

        return self.data_dir or self.data_url or (GENERATED if self.generated else None)

    def sources(self) -> tuple[list[MonthSource], MonthSource]:
        """The training months and the validation month."""
        from shared.data.sources import MonthSource, month_range

        if self.train_files or self.val_file:
            if not (self.train_files and self.val_file):
                raise click.UsageError("--train FILE needs --val FILE (and the other way round)")
            return [MonthSource(f) for f in self.train_files], MonthSource(self.val_file)
        if self.location is None:
            raise click.UsageError(
                "say where the data is: --train FILE... --val FILE, or --data-dir / --data-url "
                "/ --generated with --train-months and --val-month"
            )
        if not (self.train_months and self.val_month):
            raise click.UsageError("--train-months and --val-month are needed with a folder/URL")
        months = month_range(self.train_months)
        train = [
            MonthSource(self.location, m, rows=self.rows, seed=self.seed + i)
            for i, m in enumerate(months)
        ]
        val_month = month_range(self.val_month)[0]
        return train, MonthSource(self.location, val_month, rows=self.rows, seed=self.seed + 99)

    def config(self, settings: Any, on_worker: bool, command: str) -> Any:
        """The run's :class:`~level2_training.config.TrainingConfig` (``command`` names the
        actor in the registry's history)."""
        from level2_training import runtime
        from level2_training.config import TrainingConfig

        families = self.families()
        train, val = self.sources()
        return TrainingConfig(
            train=train,
            val=val,
            test=self.held_out(),
            families=families,
            trials=self.trials,
            seed=self.seed,
            margin=settings.promotion_margin if self.margin is None else self.margin,
            experiment=settings.experiment_name,
            registered_model=settings.registered_model_name,
            artifact_location=runtime.artifact_location(settings),
            # a worker caches downloads in its own home
            cache_dir=None if on_worker else settings.download_cache_dir,
            timeout_s=settings.download_timeout_s,
            actor=f"{getpass.getuser()} via taxi-mlops {command}"
            + (" (Prefect worker)" if on_worker else ""),
        )

    def held_out(self) -> MonthSource | None:
        """The held-back test month (``--test FILE`` or ``--test-month``), if one was given;
        it may be neither a training nor the validation month."""
        from shared.data.sources import MonthSource, month_range

        if self.test_file and self.test_month:
            raise click.UsageError("give --test FILE or --test-month, not both")
        if self.test_file:
            return MonthSource(self.test_file)
        if not self.test_month:
            return None
        location = self.location
        if location is None:
            raise click.UsageError("--test-month needs --data-dir, --data-url or --generated")
        month = month_range(self.test_month)[0]
        used = month_range(self.train_months) if self.train_months else []
        if month in used or (self.val_month and month == month_range(self.val_month)[0]):
            raise click.BadParameter(
                f"{month} is a training or the validation month: a test month is held back",
                param_hint="--test-month",
            )
        return MonthSource(location, month, rows=self.rows, seed=self.seed + 199)


def training_options(command: Any) -> Any:
    """The data and model options of a training run (``level2 train``, ``level2 kfp run``),
    handed to the command as one :class:`TrainingOptions` (``options``)."""
    names = [f.name for f in fields(TrainingOptions)]

    @functools.wraps(command)
    def with_options(**values: Any) -> Any:
        options = TrainingOptions(**{name: values.pop(name) for name in names})
        return command(options=options, **values)

    options = [
        click.option(
            "--train", "train_files", multiple=True, help="Training month file (repeatable)."
        ),
        click.option("--val", "val_file", help="Validation month file."),
        data_dir_option("Folder of TLC monthly files (with --train-months/--val-month)."),
        click.option("--data-url", help="TLC-style base URL to download months from."),
        click.option("--generated", is_flag=True, help="Use generated months (offline)."),
        click.option("--train-months", help="e.g. 2019-01..2019-03"),
        click.option("--val-month", help="e.g. 2019-04"),
        click.option("--test", "test_file", help="Held-back test month file (see --test-month)."),
        click.option(
            "--test-month",
            help="e.g. 2019-05: a held-back month (from --data-dir/--data-url/--generated) on "
            "which the chosen model and the baseline are scored after the choice, not to make it.",
        ),
        rows_option(50_000),
        click.option(
            "--models",
            default="linear,ridge,hgb",
            show_default=True,
            help=f"Families to search, from: {', '.join(FAMILY_NAMES)}. The linear baseline "
            "always runs for comparison.",
        ),
        trials_option(10, "Search budget per family."),
        seed_option(),
        click.option(
            "--margin",
            type=click.FloatRange(0, 0.99),
            default=None,
            help="Relative RMSE gain needed to replace the champion [settings: 0.01].",
        ),
    ]
    for option in reversed(options):
        with_options = option(with_options)
    return with_options


@level2.command("train")
@training_options
@click.option(
    "--on-worker",
    is_flag=True,
    help="Submit the run to the Prefect server's training deployment (PREFECT_API_URL; see "
    "`level2 deploy-flow`) and wait: a worker runs it. Data paths are read on the worker.",
)
@click.option(
    "--unless-champion",
    is_flag=True,
    help="Do nothing if the registry already has a champion (a first model for a new stack).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    help="With --on-worker: seconds to wait for the run.",
)
@json_option
def train_command(
    options: TrainingOptions,
    on_worker: bool,
    unless_champion: bool,
    timeout_s: float,
) -> None:
    """Run the training flow; register the best model as `candidate` (and maybe `champion`)."""
    from level2_training import runtime

    options.families()  # an unknown family fails before anything starts
    settings = get_settings()
    runtime.configure(settings)
    if unless_champion and (champion := _champion(settings.registered_model_name)) is not None:
        emit(
            {"ok": True, "skipped": True, "champion": champion},
            [f"the registry already has a champion (v{champion}): nothing trained"],
        )
        return
    config = options.config(settings, on_worker, "level2 train")
    # embedded mode: Prefect's temporary server boots while the flow's libraries are imported
    prefect_ready = (lambda: None) if on_worker else runtime.boot_embedded_prefect()
    from level2_training.flow import training_flow

    runtime.hide_expected_tracebacks()

    try:
        if on_worker:
            result = _run_on_worker(config, settings.prefect_api_url, timeout_s)
        else:
            prefect_ready()
            result = training_flow(config)
    except TaxiMlopsError as exc:
        fail(f"{exc} Nothing was registered.")
    emit({"ok": True, **result.to_dict()}, result_lines(result))


def _held_out_lines(result: TrainingResult) -> list[str]:
    test = result.test
    if test is None:
        return []
    return [
        f"held-back test month {test.month or test.source} ({test.rows:,} trips, not used to "
        f"choose): {result.best.family} {test.best_rmse:.3f} min, baseline "
        f"{test.baseline_rmse:.3f}: {test.improvement_vs_baseline:.1%} below the baseline"
    ]


def _family_width(names: Iterable[str]) -> int:
    """A column wide enough for every family name shown (7: the default families')."""
    return max((7, *map(len, names)))


def result_lines(result: TrainingResult) -> list[str]:
    reg = result.registered
    width = _family_width(result.families)
    lines = [
        f"baseline ({result.baseline.family}): validation RMSE {result.baseline.val_rmse:.3f} min",
        *(
            f"  {family:<{width}} best val RMSE {r.val_rmse:.3f}"
            for family, r in result.families.items()
        ),
        f"best: {result.best.family} {result.best.val_rmse:.3f} min, "
        f"{result.improvement_vs_baseline:.1%} below the baseline",
        *_held_out_lines(result),
        f"registered {reg.name} v{reg.version} as {', '.join(reg.aliases)}",
        f"champion: {reg.decision}",
        f"MLflow run {result.mlflow_run_id} ({result.tracking_uri}); "
        "`taxi-mlops level2 ui` to browse",
    ]
    if result.flow_run is not None:
        lines.append(f"ran on a Prefect worker: flow run {result.flow_run.name}")
    return lines


def _champion(model_name: str) -> int | None:
    from mlflow import MlflowClient

    from level2_training import registry

    return registry.alias_version(MlflowClient(), model_name, registry.CHAMPION)


def _run_on_worker(config: Any, prefect_api_url: str | None, timeout_s: float) -> TrainingResult:
    if not prefect_api_url:
        raise ConfigError(
            "--on-worker needs a Prefect server: set PREFECT_API_URL (`taxi-mlops stack env` "
            "prints it for the local stack)"
        )
    from level2_training.deployment import result_of, submit

    click.echo("submitted to the training deployment; waiting for a worker to run it", err=True)
    flow_run = submit(config, timeout_s=timeout_s)
    result = TrainingResult.from_dict(result_of(str(flow_run.id), config.experiment))
    return replace(result, flow_run=FlowRunRef(str(flow_run.id), flow_run.name))


@level2.command("deploy-flow")
@click.option("--pool", default="taxi-training", show_default=True, help="Process work pool.")
@click.option("--name", default="train", show_default=True, help="Deployment name.")
@json_option
def deploy_flow(pool: str, name: str) -> None:
    """Register the training flow as a deployment on a process work pool (created if missing)
    on the Prefect server at PREFECT_API_URL; `prefect worker start --pool POOL` runs it."""
    from level2_training import runtime

    settings = get_settings()
    if not settings.prefect_api_url:
        raise ConfigError("deploy-flow needs a Prefect server: set PREFECT_API_URL")
    runtime.configure(settings)
    from level2_training.deployment import register

    deployment_id = register(pool, name)
    emit(
        {"ok": True, "deployment_id": deployment_id, "pool": pool, "name": name},
        [f"deployment taxi-level2-training/{name} on pool {pool} ({deployment_id})"],
    )


@level2.command()
@json_option
def history() -> None:
    """Every alias move (and kept champion) with time, versions, reason and actor."""
    from level2_training import runtime

    settings = get_settings()
    runtime.configure(settings)
    from mlflow import MlflowClient

    from level2_training import registry

    events = registry.history(MlflowClient(), settings.registered_model_name)

    def version(v: int | None) -> str:
        return "-" if v is None else f"v{v}"

    lines = [f"{'time':<30}{'alias':<11}{'action':<7}{'from':>5} -> {'to':<5} reason (actor)"]
    lines += [
        f"{e.time:<30}{e.alias:<11}{e.action:<7}{version(e.from_version):>5} -> "
        f"{version(e.to_version):<5} {e.reason} ({e.actor})"
        for e in events
    ]
    if not events:
        lines = [f"no alias history yet for {settings.registered_model_name}"]
    emit(
        {
            "ok": True,
            "model": settings.registered_model_name,
            "events": [e.to_dict() for e in events],
        },
        lines,
    )


@level2.command()
@json_option
def status() -> None:
    """The registered model's aliases and versions."""
    from level2_training import runtime

    settings = get_settings()
    runtime.configure(settings)
    from mlflow import MlflowClient

    from level2_training import registry

    client = MlflowClient()
    name = settings.registered_model_name
    aliases = registry.aliases(client, name)
    versions: list[dict[str, Any]] = (
        [
            {
                "version": int(v.version),
                "family": v.tags.get("family"),
                "val_rmse": v.tags.get("val_rmse"),
                "val_month": v.tags.get("val_month"),
            }
            for v in client.search_model_versions(f"name='{name}'")
        ]
        if aliases or registry.history(client, name)
        else []
    )
    versions.sort(key=lambda v: v["version"])
    lines = [
        f"{name}: "
        + (", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "no aliases")
    ]
    width = _family_width(v["family"] or "?" for v in versions)
    lines += [
        f"  v{v['version']:<4} {v['family'] or '?':<{width}} val RMSE {_rmse(v['val_rmse'])} "
        f"({v['val_month']})"
        for v in versions
    ]
    emit({"ok": True, "model": name, "aliases": aliases, "versions": versions}, lines)


def _rmse(tag: str | None) -> str:
    """A version's RMSE tag as a person reads it: 3 decimals (the 6th differs by CPU, BLAS)."""
    try:
        return f"{float(tag):.3f}" if tag is not None else "?"
    except ValueError:
        return str(tag)


@level2.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
def ui(host: str, port: int) -> None:
    """Open the MLflow UI on the project's tracking store (Ctrl-C to stop)."""
    from level2_training import runtime

    settings = get_settings()
    runtime.configure(settings)
    if settings.tracking_uri.startswith(("http://", "https://")):
        click.echo(f"tracking is on a server: open {settings.tracking_uri} instead")
        return
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    click.echo(f"MLflow UI on http://{host}:{port} (store {settings.tracking_uri})", err=True)
    _exec_mlflow(command)


def _exec_mlflow(command: list[str]) -> None:
    # The server does not need MLflow's job runner; without it it is ~560 MB, not ~3.5 GB.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    os.execve(command[0], command, env)  # noqa: S606 - replace this process: signals reach mlflow


@level2.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
def server(host: str, port: int, workers: int) -> None:
    """Run an MLflow tracking server for a team: backend store and artifact destination from
    settings (TAXI_MLOPS_DB_* for PostgreSQL, TAXI_MLOPS_MLFLOW_ARTIFACTS_DESTINATION for S3)."""
    from level2_training.tracking_server import server_command

    command = server_command(get_settings(), host, port, workers)
    click.echo(f"MLflow tracking server on http://{host}:{port}", err=True)
    _exec_mlflow(command)


# `level2 kfp` lives in its own module; registering it here keeps one `level2` group
from level2_training import kfp_cli as _kfp_cli  # noqa: E402,F401
