"""What a batch of labels costs the prediction log: 5,000 labels in one call against the same
labels one call each (what 5,000 single ``POST /feedback`` requests do), on SQLite (with the
journal, as level 3 logs by default) and on PostgreSQL (a private cluster), in one run.

Each case gets a fresh log holding one prediction per ride, then stores every ride's label
(all "stored"), then offers other values for all of them (all "conflict"), and 5,000 labels
for rides with no prediction (all "unknown"). Batches are what the dispatch system sends
(level3_deployment/labels.py); the ratio is one-by-one time over batch time.

Usage: python -m benchmarks.labels [--labels N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import click

from level3_deployment.prediction_log import PredictionLog, PredictionRecord
from taxi_mlops.stack.postgres import temporary_cluster


def filled_log(url: str, n: int) -> PredictionLog:
    log = PredictionLog(url, journal=True)
    features = {"PULocationID": 161, "pickup_datetime": "2019-03-01T10:00:00"}
    records = [PredictionRecord(f"r{i}", "blue", "1", features, 10.0, 1.0) for i in range(n)]
    for start in range(0, n, 500):
        log.append(records[start : start + 500])
    log.sync()
    return log


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run_case(url: str, n: int, batched: bool) -> dict[str, float]:
    log = filled_log(url, n)
    phases = {
        "stored": [(f"r{i}", 7.0) for i in range(n)],
        "conflict": [(f"r{i}", 8.0) for i in range(n)],
        "unknown": [(f"ghost{i}", 7.0) for i in range(n)],
    }
    seconds = {}
    for phase, labels in phases.items():
        if batched:
            seconds[phase] = timed(lambda labels=labels: log.record_labels(labels))
        else:
            seconds[phase] = timed(
                lambda labels=labels: [log.record_labels([label]) for label in labels]
            )
    log.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(".taxi-mlops/reports/bench/labels.json").resolve()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="taxi-bench-labels-") as tmp, ExitStack() as stack:
        pg = stack.enter_context(temporary_cluster())
        for backend in ("SQLite", "PostgreSQL"):
            for batched in (False, True):
                name = f"{backend}-{'batch' if batched else 'one-by-one'}"
                if backend == "SQLite":
                    (Path(tmp) / name).mkdir()
                    url = f"sqlite:///{Path(tmp) / name / 'predictions.db'}"
                else:
                    url = pg.create_database(name.lower().replace("-", "_"))
                results.setdefault(backend, {})[name] = run_case(url, args.labels, batched)
    for backend, cases in results.items():
        one, batch = cases[f"{backend}-one-by-one"], cases[f"{backend}-batch"]
        for phase in one:
            click.echo(
                f"{backend:10} {args.labels:,} {phase:8} labels: one by one {one[phase]:7.3f} s, "
                f"batch {batch[phase]:6.3f} s ({one[phase] / batch[phase]:5.1f}x)"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"labels": args.labels, "seconds": results}, indent=2))
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
