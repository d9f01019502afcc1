"""What logging every prediction to PostgreSQL costs against SQLite, in one run, as a ratio.

The same level-3 service (a linear champion as blue, so the model does not hide the logging;
2 gunicorn workers, single-ride requests with
a ride id each, so every answer is one logged row) is started twice: with the embedded state
(SQLite files in its home) and with ``TAXI_MLOPS_STATE_DB_URL`` on a private PostgreSQL
cluster (127.0.0.1, default durability: each commit is flushed to the WAL). Both commit a
transaction per answer: the SQLite service's journal (shared/statedb/journal.py, its default,
which PostgreSQL does not have) is switched off here, so the ratio is the backends' own; the
journal's gain is measured in benchmarks/serving.py. The two run in
rotation, ``--rounds`` times each, under wrk (Python clients when wrk is missing); the best of
each is kept. Afterwards each log's rows are counted against the answers wrk got.

Usage: python -m benchmarks.state_backends [--seconds N] [--rounds N]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click
import sqlalchemy as sa

from benchmarks.scaleout import BIN, LUA, best_of_rounds, cli, load_arguments
from shared.services import ServiceProcess, free_port, start_service
from taxi_mlops.stack.postgres import temporary_cluster

BUDGET = 0.25  # the bound: PostgreSQL may cost at most 25 % of SQLite's throughput


def start(home: Path, registry: Path, state_url: str | None) -> ServiceProcess:
    port = free_port()
    env = {
        "TAXI_MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{registry}",
        **({"TAXI_MLOPS_STATE_DB_URL": state_url} if state_url else {}),
        "TAXI_MLOPS_PREDICTION_JOURNAL": "false",
    }
    command = [str(BIN / "taxi-mlops"), "level3", "serve", "--port", str(port), "--workers", "2"]
    return start_service(
        command, f"http://127.0.0.1:{port}", home / "serve.log", env=env, timeout_s=180
    )


def logged_rows(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM predictions")).scalar() or 0)
    finally:
        engine.dispose()


def main() -> None:
    args, out = load_arguments(__doc__, "state_backends", rounds=3)
    tool = "wrk" if shutil.which("wrk") else "python"

    with tempfile.TemporaryDirectory(prefix="taxi-bench-state-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        trainer = root / "trainer"
        registry = trainer / "mlflow" / "mlflow.db"
        click.echo("training a champion...")
        cli(trainer, "level2", "train", "--generated", "--rows", "20000", "--trials", "1",
            "--train-months", "2019-01", "--val-month", "2019-02", "--models", "ridge")  # fmt: skip
        pg = stack.enter_context(temporary_cluster())
        urls = {
            "SQLite": f"sqlite:///{root / 'sqlite-home' / 'level3' / 'predictions.db'}",
            "PostgreSQL": pg.create_database("state"),
        }
        services = {
            "SQLite": stack.enter_context(start(root / "sqlite-home", registry, None)),
            "PostgreSQL": stack.enter_context(
                start(root / "pg-home", registry, urls["PostgreSQL"])
            ),
        }
        script = root / "post.lua"
        script.write_text(LUA)
        urls_of = {name: service.url for name, service in services.items()}
        best, answered = best_of_rounds(
            urls_of, args.rounds, args.seconds, args.connections, script
        )
        rows = {name: logged_rows(url) for name, url in urls.items()}

    ratio = best["PostgreSQL"]["requests_per_s"] / best["SQLite"]["requests_per_s"]
    results = {
        "tool": tool,
        "cpus": os.cpu_count(),
        "connections": args.connections,
        "seconds": args.seconds,
        "best": best,
        "rows_logged": rows,
        "answers_estimated": answered,
        "ratio_postgres_vs_sqlite": ratio,
        "within_budget": ratio >= 1 - BUDGET,
    }
    click.echo(
        f"\nPostgreSQL / SQLite throughput: {ratio:.2f}x (cost {1 - ratio:+.0%}; budget "
        f"{BUDGET:.0%}: {'within' if results['within_budget'] else 'OVER'}); rows logged "
        f"{rows} ({tool}, {results['cpus']} CPUs, {args.connections} connections)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
