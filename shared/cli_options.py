"""The click options every data-driven command shares, declared once: where the months come
from (``--data-dir``, ``--months``, ``--rows`` for generated ones), the ``--seed`` and the
level-2 search budget (``--trials``). Each command picks its defaults and help; the names,
types and ranges stay the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DATA_DIR_HELP = (
    "Folder of real TLC files (e.g. ../shared/data/tlc-yellow-sample). Default: generated data."
)
MONTHS_HELP = (
    "The first trains, the second validates, the third is the new month; all are replayed."
)


def data_dir_option(help: str = DATA_DIR_HELP, *, must_exist: bool = True) -> Callable[[F], F]:
    kind = click.Path(exists=True, file_okay=False) if must_exist else None
    return click.option("--data-dir", type=kind, default=None, help=help)


def months_option(
    default: str | None = None, help: str = MONTHS_HELP, *, required: bool = False
) -> Callable[[F], F]:
    return click.option(
        "--months", default=default, required=required, show_default=default is not None, help=help
    )


def rows_option(default: int = 10_000, minimum: int = 1000) -> Callable[[F], F]:
    return click.option(
        "--rows",
        type=click.IntRange(min=minimum),
        default=default,
        show_default=True,
        help="Trips per generated month.",
    )


def seed_option(default: int = 0) -> Callable[[F], F]:
    return click.option("--seed", type=int, default=default, show_default=True)


def trials_option(
    default: int = 3, help: str = "Level-2 search budget per model family."
) -> Callable[[F], F]:
    return click.option(
        "--trials", type=click.IntRange(min=1), default=default, show_default=True, help=help
    )
