"""The level-2 pipeline in Kubeflow (KFP's local subprocess runner) against the Prefect flow,
on the same data and budget, through the CLI a user runs, in one run: wall time and the ratio.

Each command runs in a fresh TAXI_MLOPS_HOME (a cold start for both: imports, and for Prefect
its temporary server), alternating, `--repeat` times; the median is reported. Both must
register models with the same validation RMSE (the same steps on the same data).
Usage: python -m benchmarks.kfp [--rows N] [--trials N] [--repeat N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

CLI = str(Path(sys.executable).parent / "taxi-mlops")


def timed(home: Path, *args: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env["TAXI_MLOPS_HOME"] = str(home)
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - this virtualenv's CLI, fixed arguments
        [CLI, *args, "--json"], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{completed.stderr[-3000:]}")
    return seconds, json.loads(completed.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(".taxi-mlops/reports/bench/kfp.json").resolve()
    data = ["--generated", "--train-months", "2019-01..2019-02", "--val-month", "2019-03"]
    data += ["--rows", str(args.rows), "--trials", str(args.trials)]
    seconds: dict[str, list[float]] = {"prefect": [], "kfp": []}
    rmse: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="taxi-bench-kfp-") as tmp:
        for i in range(args.repeat):
            for name, command in (
                ("prefect", ["level2", "train"]),
                ("kfp", ["level2", "kfp", "run"]),
            ):
                took, result = timed(Path(tmp) / f"{name}-{i}", *command, *data)
                seconds[name].append(took)
                rmse[name] = result["best"]["val_rmse"]
    if abs(rmse["kfp"] - rmse["prefect"]) > 1e-9:
        raise SystemExit(f"the two runs registered different models: {rmse}")
    median = {k: statistics.median(v) for k, v in seconds.items()}
    results = {
        "rows_per_month": args.rows,
        "trials": args.trials,
        "seconds": seconds,
        "median_seconds": median,
        "kfp_over_prefect": round(median["kfp"] / median["prefect"], 2),
        "best_val_rmse": rmse["kfp"],
    }
    click.echo(
        f"level-2 pipeline, 2 generated months of {args.rows:,} trips + 1, {args.trials} trials, "
        f"cold CLI runs (median of {args.repeat}):"
    )
    click.echo(f"  Prefect flow (level2 train)      {median['prefect']:6.1f} s")
    click.echo(f"  KFP local runner (level2 kfp run) {median['kfp']:6.1f} s")
    click.echo(
        f"  ratio KFP / Prefect: {results['kfp_over_prefect']:.2f}x "
        f"(same best RMSE {rmse['kfp']:.4f})"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
