"""Serving at the speed of the web framework (issue 18): every service against the framework's
ceiling, in one run, printed as ratios.

Each service runs under gunicorn with 2 workers and the project's default worker settings, and
is loaded by wrk (2 threads, 8 connections) on the same machine:

- the ceiling: a Flask app that answers a constant (benchmarks/constant_app.py);
- level 1 (the course's linear model), scoring through its compiled predictor, and through the
  sklearn Pipeline (TAXI_MLOPS_SERVING_ENGINE=sklearn: the path before the compiled one);
- level 3, the hgb champion as blue and a linear green at 50 %, every answer logged: compiled
  and sklearn with the state on SQLite (each answer a line of the worker's journal, ingested in
  batches: the default), compiled with a SQLite transaction per answer
  (TAXI_MLOPS_PREDICTION_JOURNAL=false), and compiled with the state on PostgreSQL (a
  transaction per answer);
- `mlflow models serve` of the same hgb model (2 workers).

Then, for the ceiling, level 1 and level 3 (journal and transaction): p50 and p99 at about
half of the peak found above (each wrk connection waits between requests, wrk's ``delay()``);
level 3's batch /predict with 1,000 rides per request (rides/s); and the predictors alone, in
one thread, on 1,000-ride batches (rides/s per worker). Each round also reads the CPU a request
cost the service's processes and wrk (benchmarks/cpu.py): on 2 cores shared with wrk, requests
per second alone do not say where a service's time goes.

Usage: python -m benchmarks.serving [--seconds N] [--rounds N]   (needs wrk: apt-get install wrk)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.scaleout import BIN, LUA, best_of_rounds, cli, load_arguments, load_wrk
from benchmarks.serving_workers import train as train_level1
from shared.services import ServiceProcess, free_port, start_service
from taxi_mlops.stack.postgres import temporary_cluster

ROOT = Path(__file__).resolve().parents[1]
MODEL = "taxi-trip-duration"
#: one ride as `mlflow models serve` takes it (a DataFrame record)
MLFLOW_LUA = """
request = function()
  local body = '{"dataframe_records": [{"PULocationID": 161, "DOLocationID": 236, ' ..
    '"trip_distance": 2.5, "pickup_datetime": "2019-02-11T08:30:00"}]}'
  return wrk.format("POST", "/invocations", {["Content-Type"] = "application/json"}, body)
end
"""
BATCH_RIDES = 1000
#: gunicorn workers per service
WORKERS = 2


def batch_lua(rides: int) -> str:
    """A /predict body of ``rides`` distinct rides (ids, zones and distances vary)."""
    items = [
        {
            "ride_id": f"batch-{i}",
            "PULocationID": 1 + (i * 7) % 263,
            "DOLocationID": 1 + (i * 13) % 263,
            "trip_distance": round(0.5 + (i % 40) * 0.37, 2),
            "pickup_datetime": f"2019-02-{11 + i % 7:02d}T{i % 24:02d}:30:00",
        }
        for i in range(rides)
    ]
    body = json.dumps(items).replace("\\", "\\\\").replace("'", "\\'")
    return (
        f"body = '{body}'\n"
        "request = function()\n"
        '  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)\n'
        "end\n"
    )


def paced_lua(script: str, delay_ms: float) -> str:
    """``script`` with each connection waiting ``delay_ms`` between requests."""
    return f"{script}\ndelay = function()\n  return {delay_ms:.3f}\nend\n"


def script(root: Path, name: str, text: str) -> Path:
    path = root / f"{name}.lua"
    path.write_text(text)
    return path


def start(
    root: Path, name: str, command: list[str], env: dict[str, str], health_path: str = "/health"
) -> ServiceProcess:
    port = free_port()
    command = [c.replace("{port}", str(port)) for c in command]
    return start_service(
        command,
        f"http://127.0.0.1:{port}",
        root / f"{name}.log",
        env=env,
        timeout_s=240,
        health_path=health_path,
    )


def registry(root: Path) -> Path:
    """A registry with the hgb champion (v1) and a linear version (v2)."""
    trainer = root / "trainer"
    common = ["--generated", "--rows", "20000", "--trials", "1"]
    click.echo("training: an hgb champion and a linear version (level 2), a level-1 model...")
    cli(trainer, "level2", "train", *common, "--train-months", "2019-01", "--val-month",
        "2019-02", "--models", "hgb")  # fmt: skip
    cli(trainer, "level2", "train", *common, "--train-months", "2019-02", "--val-month",
        "2019-03", "--models", "linear")  # fmt: skip
    return trainer / "mlflow" / "mlflow.db"


def level3(root: Path, name: str, tracking: str, env: dict[str, str]) -> ServiceProcess:
    """A level-3 service in a home of its own, v2 deployed to green at 50 %."""
    home = root / name
    env = {"TAXI_MLOPS_HOME": str(home), "MLFLOW_TRACKING_URI": tracking, **env}
    command = [str(BIN / "taxi-mlops"), "level3", "serve", "--port", "{port}", "--workers", "2"]
    service = start(root, name, command, env)
    cli_env = {**os.environ, **env}
    subprocess.run(  # noqa: S603 - our own CLI
        [str(BIN / "taxi-mlops"), "level3", "deploy", "--version", "2", "--share", "50",
         "--url", service.url],
        check=True, capture_output=True, env=cli_env,
    )  # fmt: skip
    return service


def services(stack: ExitStack, root: Path) -> dict[str, ServiceProcess]:
    tracking = f"sqlite:///{registry(root)}"
    level1_model = train_level1(root)
    pg = stack.enter_context(temporary_cluster())
    sklearn = {"TAXI_MLOPS_SERVING_ENGINE": "sklearn"}
    level1 = [str(BIN / "taxi-mlops"), "level1", "serve", "--model", str(level1_model),
              "--port", "{port}", "--workers", "2"]  # fmt: skip
    mlflow = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/1",
              "--env-manager", "local", "-h", "127.0.0.1", "-p", "{port}", "-w", "2"]  # fmt: skip
    constant = [sys.executable, "-m", "benchmarks.constant_app", "--port", "{port}"]
    started = {
        "ceiling": start(root, "ceiling", constant, {"PYTHONPATH": str(ROOT)}),
        "level1": start(root, "level1", level1, {}),
        "level1 sklearn": start(root, "level1-sklearn", level1, sklearn),
        "level3": level3(root, "level3", tracking, {}),
        "level3 sklearn": level3(root, "level3-sklearn", tracking, sklearn),
        "level3 commit": level3(
            root, "level3-commit", tracking, {"TAXI_MLOPS_PREDICTION_JOURNAL": "false"}
        ),
        "level3 postgres": level3(
            root, "level3-pg", tracking, {"TAXI_MLOPS_STATE_DB_URL": pg.create_database("state")}
        ),
        "mlflow serve": start(
            root,
            "mlflow",
            mlflow,
            {"MLFLOW_TRACKING_URI": tracking, "PATH": f"{BIN}:{os.environ['PATH']}"},
            health_path="/ping",
        ),
    }
    return {name: stack.enter_context(service) for name, service in started.items()}


def half_load(
    urls: dict[str, str], best: dict[str, dict], root: Path, seconds: float, connections: int
) -> dict[str, dict]:
    """p50/p99 at about half of each service's peak: each connection waits so that all of them
    together send half the peak rate (the wait is fixed; the measured rate is reported)."""
    out = {}
    # level 3 twice: its journal's ingest thread shares the worker's GIL with the requests
    for name in ("ceiling", "level1", "level3", "level3 commit"):
        target = best[name]["requests_per_s"] / 2
        delay_ms = max(connections / target * 1000 - best[name]["p50_ms"], 0.0)
        paced = script(root, f"paced-{name.replace(' ', '-')}", paced_lua(LUA, delay_ms))
        result = load_wrk(urls[name], seconds, connections, paced)
        result["target_per_s"] = target
        out[name] = result
        click.echo(
            f"half load {name:<13} {result['requests_per_s']:7.0f} req/s (target {target:.0f})  "
            f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
        )
    return out


def batches(urls: dict[str, str], root: Path, seconds: float) -> dict[str, dict]:
    body = script(root, "batch", batch_lua(BATCH_RIDES))
    out = {}
    # level 1 scores and answers; level 3 also logs every ride (and green's shadow scores)
    # before it answers: in its journal, or in a transaction
    for name in ("level1", "level3", "level3 commit", "level3 sklearn"):
        result = load_wrk(urls[name], seconds, 4, body)
        result["rides_per_s"] = result["requests_per_s"] * BATCH_RIDES
        # both workers were busy the whole time (4 connections for 2 workers)
        result["rides_per_s_per_worker"] = result["rides_per_s"] / WORKERS
        out[name] = result
        click.echo(
            f"batch {name:<15} {result['rides_per_s']:9.0f} rides/s "
            f"({result['rides_per_s_per_worker']:.0f} per worker) "
            f"({BATCH_RIDES} per request, failed {result['failed']})"
        )
    return out


def predictors_alone(native_dir: Path) -> dict[str, dict]:
    """Each family's predictor, one thread, 1,000-ride batches: rides/s per worker."""
    from threadpoolctl import threadpool_limits

    from shared.compiled import probe_rides, serving_model
    from shared.data.generator import generate_month
    from shared.data.schema import to_canonical
    from shared.data.validate import ValidationBounds, clean_trips
    from shared.features import split_xy
    from shared.models import build_model, get_family

    clean, _ = clean_trips(
        to_canonical(generate_month("2019-01", 20000, seed=3), "g"), ValidationBounds()
    )
    rides = probe_rides(BATCH_RIDES)
    out: dict[str, dict] = {}
    with threadpool_limits(limits=1):
        for family in ("linear", "ridge", "hgb"):
            model = build_model(family).fit(*split_xy(clean, get_family(family).spec))
            engines = [
                ("compiled", serving_model(model, native_dir=native_dir)),
                ("sklearn", serving_model(model, compile_it=False)),
            ]
            if family == "hgb":  # the trees interpreted, where there is no C compiler
                engines.insert(1, ("gtil", serving_model(model)))
            for engine, served in engines:
                out[f"{family} {engine}"] = {
                    "engine": served.engine,
                    "rides_per_s": _rides_per_s(served.predict, rides),
                    # as a one-ride request is scored: from the ride's scalars
                    "one_ride_ms": _seconds_per_call(
                        served.one, {k: v[0] for k, v in rides.items()}
                    )
                    * 1000,
                }
                click.echo(
                    f"predictor {family:<6} {engine:<8} ({served.engine:<8}) "
                    f"{out[f'{family} {engine}']['rides_per_s']:11.0f} rides/s, one ride "
                    f"{out[f'{family} {engine}']['one_ride_ms']:.3f} ms"
                )
    return out


def _seconds_per_call(
    predict: Callable[[Any], Any],
    rides: Mapping[str, Any],
    budget_s: float = 1.0,
) -> float:
    predict(rides)
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < budget_s:
        predict(rides)
        calls += 1
    return (time.perf_counter() - began) / calls


def _rides_per_s(
    predict: Callable[[dict[str, np.ndarray]], np.ndarray], rides: dict[str, np.ndarray]
) -> float:
    return len(rides["PULocationID"]) / _seconds_per_call(predict, rides)


def ratios(best: dict[str, dict]) -> dict[str, float]:
    ceiling = best["ceiling"]["requests_per_s"]
    return {
        f"{name} / ceiling": result["requests_per_s"] / ceiling
        for name, result in best.items()
        if name != "ceiling"
    } | {
        "level3 compiled / sklearn": best["level3"]["requests_per_s"]
        / best["level3 sklearn"]["requests_per_s"],
        "level1 compiled / sklearn": best["level1"]["requests_per_s"]
        / best["level1 sklearn"]["requests_per_s"],
        "level3 postgres / sqlite": best["level3 postgres"]["requests_per_s"]
        / best["level3"]["requests_per_s"],
        "level3 journal / commit": best["level3"]["requests_per_s"]
        / best["level3 commit"]["requests_per_s"],
        "level3 postgres / sqlite commit": best["level3 postgres"]["requests_per_s"]
        / best["level3 commit"]["requests_per_s"],
    }


def main() -> None:
    # three rounds, the best of each service: a round on a 2-core machine that shares its
    # cores with wrk varies by ~10 %. (A worker that took every wrk connection used to idle
    # its neighbour through a whole round; connections now close after 100 requests and
    # spread again: shared/gunicorn_worker.py.)
    args, out = load_arguments(__doc__, "serving", rounds=3)
    if shutil.which("wrk") is None:
        raise SystemExit("benchmarks.serving needs wrk (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="taxi-bench-serving-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        running = services(stack, root)
        urls = {name: service.url for name, service in running.items()}
        pids = {name: service.pid for name, service in running.items()}
        scripts = {name: script(root, "single", LUA) for name in urls}
        scripts["mlflow serve"] = script(root, "mlflow", MLFLOW_LUA)
        best, _ = best_of_rounds(urls, args.rounds, args.seconds, args.connections, scripts, pids)
        paced = half_load(urls, best, root, args.seconds, args.connections)
        batch = batches(urls, root, args.seconds)
    with tempfile.TemporaryDirectory(prefix="taxi-bench-native-") as native:
        alone = predictors_alone(Path(native))
    results = {
        "cpus": os.cpu_count(),
        "connections": args.connections,
        "best": best,
        "ratios": ratios(best),
        "half_load": paced,
        "batch": batch,
        "predictors_alone": alone,
    }
    click.echo("")
    for name, value in results["ratios"].items():
        click.echo(f"{name:<28} {value:6.2f}x")
    click.echo(
        "\nCPU a request in each service's best round (server: its processes; wrk: the load)"
    )
    for name, result in best.items():
        if result.get("server_cpu_us") is not None:
            click.echo(
                f"{name:<28} server {result['server_cpu_us']:5.0f} us  "
                f"wrk {result['client_cpu_us']:4.0f} us"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
