"""``taxi-mlops stack``: PostgreSQL, S3, MLflow and Prefect servers, a Prefect worker, level-3
replicas behind nginx, on this machine; every command takes ``--json``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from shared.cli_output import emit, is_json, json_option
from shared.settings import get_settings

if TYPE_CHECKING:  # imported where it is used: it imports everything
    from taxi_mlops.stack.stack import Stack


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


def _stack(progress: bool = True) -> Stack:
    from taxi_mlops.stack.stack import stack_from

    return stack_from(get_settings(), _progress if progress else None)


@click.group()
def stack() -> None:
    """Scale-out mode on this machine: the servers the levels use by configuration."""


@stack.command()
@click.option(
    "--seed/--no-seed",
    default=True,
    show_default=True,
    help="On a registry without a champion, train a first one through the worker (the "
    "replicas serve the champion).",
)
@click.option(
    "--seed-rows",
    type=click.IntRange(min=1000),
    default=20_000,
    show_default=True,
    help="Generated trips per month for that first model.",
)
@json_option
def up(seed: bool, seed_rows: int) -> None:
    """Start what is not running (PostgreSQL, S3, MLflow, Prefect and its worker, the level-3
    replicas, nginx), each health-checked; what already runs is left alone."""
    result = _stack().up(seed=seed, seed_rows=seed_rows)
    urls = result["urls"]
    lines = [
        f"stack up in {result['seconds']} s",
        f"  level 3 (nginx): {urls['level3']}",
        f"  MLflow:          {urls['mlflow']}",
        f"  Prefect:         {urls['prefect']}",
        f"  S3:              {urls['s3']}",
        f"  PostgreSQL:      {urls['postgres']}",
        'point every taxi-mlops command at it:  eval "$(taxi-mlops stack env)"',
    ]
    emit(result, lines)


@stack.command()
@json_option
def down() -> None:
    """Stop every stack process (data, registry and artifacts are kept)."""
    result = _stack().down()
    lines = [f"stack down: {len(result['stopped'])} components stopped"]
    lines += [f"stray process {s['pid']} stopped: {s['command']}" for s in result["strays"]]
    if result["left_running"]:
        lines.append(f"still running: {result['left_running']}")
    emit(result, lines)
    if not result["ok"]:
        sys.exit(1)


@stack.command()
@json_option
def status() -> None:
    """Each component's PID, port and health; exit code 1 unless all are healthy."""
    result = _stack(progress=False).status()
    lines = [f"{'component':<12}{'pid':>8}  {'port':>6}  health"] + [
        f"{c['name']:<12}{c['pid'] or '-':>8}  {c['port'] or '-':>6}  "
        f"{'ok' if c['healthy'] else 'DOWN'}: {c['detail']}"
        for c in result["components"]
    ]
    emit(result, lines)
    if not result["ok"]:
        sys.exit(1)


@stack.command()
@click.argument("component")
@json_option
def restart(component: str) -> None:
    """Stop COMPONENT (mlflow, prefect, worker, level3-1, nginx, ...) and start it again."""
    result = _stack().restart(component)
    emit(result, [f"{component}: {result['stopped']}, then {result['action']}"])


@stack.command()
@json_option
def env() -> None:
    """The variables that point taxi-mlops at the stack: eval "$(taxi-mlops stack env)"."""
    import shlex

    from taxi_mlops.stack.plan import database_password, plan_from

    settings = get_settings()
    plan = plan_from(settings)
    variables = plan.client_env(database_password(plan, settings))
    if is_json():
        emit({"ok": True, "env": variables})
    else:
        for key, value in variables.items():
            click.echo(f"export {key}={shlex.quote(value)}")
