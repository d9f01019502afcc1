"""Run the project's own CLI as a child process and read its ``--json`` answer: how the demo
and the comparison report drive each level, so what they show is what a reader's command
prints."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import TaxiMlopsError

Say = Callable[[str], None]


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("taxi-mlops")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "taxi_mlops"]


def run_cli(
    args: list[str], say: Say = lambda line: None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``taxi-mlops ARGS --json`` and return its JSON, with the wall time it took under
    ``"_seconds"``; fail with its message if it fails."""
    say(f"$ taxi-mlops {shlex.join(args)}")
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our own CLI
        [*cli(), *args, "--json"], capture_output=True, text=True, check=False, env=env
    )
    seconds = time.perf_counter() - started
    try:
        result = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise TaxiMlopsError(
            f"`taxi-mlops {shlex.join(args)}` failed:\n{completed.stderr[-3000:]}"
        ) from None
    if completed.returncode != 0:
        raise TaxiMlopsError(f"`taxi-mlops {shlex.join(args)}`: {result.get('error')}")
    result["_seconds"] = round(seconds, 3)
    return result


def month_files(
    data_dir: str | None,
    months: list[str],
    rows: int,
    seed: int,
    out_dir: Path,
    say: Say = lambda line: None,
) -> list[str]:
    """The TLC file of each month: in ``data_dir``, or generated into ``out_dir``."""
    if data_dir:
        files = [Path(data_dir) / f"yellow_tripdata_{m}.parquet" for m in months]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise TaxiMlopsError(f"--data-dir: no file for {', '.join(missing)}")
        return [str(f) for f in files]
    paths = []
    for i, month in enumerate(months):
        path = out_dir / f"yellow_tripdata_{month}.parquet"
        run_cli(
            [
                "data",
                "generate",
                "--month",
                month,
                "--rows",
                str(rows),
                "--seed",
                str(seed + i),
                "--out",
                str(path),
            ],
            say,
        )
        paths.append(str(path))
    return paths
