"""Level-2 benchmarks (issue 3), in one process, printed as ratios.

1. Orchestration + tracking overhead: the level-2 flow (linear model, no search) against the bare
   level-1 script on the same files. Both run after a warm-up flow, so the temporary Prefect
   server and the imports are paid once; that one-off cost is reported on its own.
2. Train time of the full search (ridge + hgb, N trials each, plus the linear baseline) at 1M
   generated rows.

Runs in a temporary TAXI_MLOPS_HOME, never in the user's registry.
Usage: python -m benchmarks.level2 [--rows N] [--val-rows N] [--trials N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import click


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--val-rows", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(".taxi-mlops/reports/bench/level2.json").resolve()

    with tempfile.TemporaryDirectory(prefix="taxi-bench-l2-") as tmp:
        os.environ["TAXI_MLOPS_HOME"] = tmp
        for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
            os.environ.pop(key, None)
        results = run(Path(tmp), args)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"results: {out}")


def run(tmp: Path, args: argparse.Namespace) -> dict:
    from level2_training import runtime
    from shared.settings import Settings

    settings = Settings()
    runtime.configure(settings)
    started = time.perf_counter()
    from level1_devops.train import train_from_files
    from level2_training.flow import TrainingConfig, training_flow
    from shared.data.generator import generate_month
    from shared.data.sources import GENERATED, MonthSource
    from shared.data.validate import ValidationBounds

    runtime.hide_expected_tracebacks()
    import_s = time.perf_counter() - started

    def config(train: list[MonthSource], val: MonthSource, families: list[str], trials: int):  # noqa: ANN202
        return TrainingConfig(
            train=train,
            val=val,
            families=families,
            trials=trials,
            artifact_location=runtime.artifact_location(settings),
            actor="benchmark",
        )

    started = time.perf_counter()
    training_flow(
        config(
            [MonthSource(GENERATED, "2019-01", rows=2000)],
            MonthSource(GENERATED, "2019-02", rows=2000),
            ["linear"],
            1,
        )
    )
    first_flow_s = time.perf_counter() - started
    click.echo(
        f"cold start: imports {import_s:.1f} s, first flow (starts Prefect's server) "
        f"{first_flow_s:.1f} s"
    )

    train_file, val_file = (
        tmp / "yellow_tripdata_2019-01.parquet",
        tmp / "yellow_tripdata_2019-02.parquet",
    )
    generate_month("2019-01", args.rows, seed=1).to_parquet(train_file)
    generate_month("2019-02", args.val_rows, seed=2).to_parquet(val_file)

    level1_s, level2_s = [], []
    for i in range(args.repeat):
        started = time.perf_counter()
        level1 = train_from_files(
            str(train_file), str(val_file), tmp / f"l1-{i}.joblib", ValidationBounds()
        )
        level1_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        level2 = training_flow(
            config([MonthSource(str(train_file))], MonthSource(str(val_file)), ["linear"], 1)
        )
        level2_s.append(time.perf_counter() - started)
    ratio = min(level2_s) / min(level1_s)
    click.echo(
        f"linear, no search, {args.rows:,} rows: level 1 {min(level1_s):.1f} s, level-2 flow "
        f"{min(level2_s):.1f} s: {ratio:.2f}x (val RMSE {level1['val_rmse']:.4f} vs "
        f"{level2.best.val_rmse:.4f})"
    )

    if args.skip_search:
        return {"rows": args.rows, "linear_no_search": {"ratio": ratio}}
    started = time.perf_counter()
    search = training_flow(
        config(
            [MonthSource(str(train_file))],
            MonthSource(str(val_file)),
            ["ridge", "hgb"],
            args.trials,
        )
    )
    search_s = time.perf_counter() - started
    click.echo(
        f"full search at {args.rows:,} rows (linear + ridge, hgb x {args.trials} trials): "
        f"{search_s:.0f} s; best {search.best.family} val RMSE "
        f"{search.best.val_rmse:.3f} vs baseline {search.baseline.val_rmse:.3f}"
    )
    return {
        "rows": args.rows,
        "val_rows": args.val_rows,
        "cold_start": {"imports_seconds": import_s, "first_flow_seconds": first_flow_s},
        "linear_no_search": {
            "level1_seconds": level1_s,
            "level2_flow_seconds": level2_s,
            "ratio": ratio,
            "level1_val_rmse": level1["val_rmse"],
            "level2_val_rmse": level2.best.val_rmse,
        },
        "search": {
            "seconds": search_s,
            "trials_per_family": args.trials,
            "best": asdict(search.best),
            "baseline": asdict(search.baseline),
            "families": {f: r.val_rmse for f, r in search.families.items()},
        },
    }


if __name__ == "__main__":
    main()
