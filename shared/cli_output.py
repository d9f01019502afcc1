"""How every command reports: a human summary, or one JSON document with ``--json``.

Errors the user can act on (:class:`shared.errors.TaxiMlopsError`, bad parameters) end the
command with exit code 2 and a one-line message (a JSON ``{"ok": false, "error": ...}`` with
``--json``), never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar, cast

import click

from shared.errors import TaxiMlopsError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2


def json_option(func: F) -> F:
    """Add ``--json`` and turn user errors into clean messages."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document for scripts.")
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        ctx.meta["as_json"] = as_json
        ctx.meta["stdout"] = sys.stdout
        # With --json, stdout carries one document: whatever libraries print while the command
        # runs (MLflow prints run links, for one) goes to stderr instead.
        redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
        try:
            with redirect:
                return func(*args, **kwargs)
        except click.UsageError as exc:
            fail(exc.format_message())
        except (TaxiMlopsError, ValueError) as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def _stdout() -> IO[str]:
    ctx = click.get_current_context(silent=True)
    return cast(IO[str], ctx.meta.get("stdout", sys.stdout) if ctx else sys.stdout)


def is_json() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get("as_json"))


def emit(payload: dict[str, Any], lines: Iterable[str] = ()) -> None:
    """Print the result: ``payload`` as JSON with ``--json``, else the human ``lines``."""
    if is_json():
        click.echo(json.dumps(payload, indent=2, default=str), file=_stdout())
    else:
        for line in lines:
            click.echo(line)


def fail(message: str, payload: dict[str, Any] | None = None) -> None:
    """End the command with a user error."""
    if is_json():
        body = {"ok": False, "error": message, **(payload or {})}
        click.echo(json.dumps(body, indent=2, default=str), file=_stdout())
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)
