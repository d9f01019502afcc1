"""Whether the real `taxi-mlops` CLI accepts a command line, without running it: the commands
written into infrastructure files (ECS tasks, docker-compose) fail a unit test when an option
is renamed or removed, not a deployment."""

from __future__ import annotations

import click

from taxi_mlops.cli import main


def assert_cli_accepts(args: list[str]) -> None:
    """``args`` after ``taxi-mlops``; raises (click.UsageError, AssertionError) if refused."""
    assert not any("${" in a for a in args), args  # every interpolation needs a sample value
    ctx = main.make_context("taxi-mlops", [*args], resilient_parsing=True)
    cmd: click.Command = main
    while isinstance(cmd, click.Group):
        name, args = args[0], args[1:]
        found = cmd.get_command(ctx, name)
        assert found is not None, f"no command {name!r}"
        cmd = found
        ctx = click.Context(cmd, parent=ctx, info_name=name)
    cmd.make_context(cmd.name, list(args), parent=ctx)  # raises on an unknown option or value
