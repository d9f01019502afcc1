"""``taxi-mlops demo``: the walkthrough, level by level, on one data set, offline.

Each step runs the same ``taxi-mlops`` command a reader would type (printed before it runs), so
the demo is also a check that the documented commands work.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from shared.errors import TaxiMlopsError
from shared.settings import get_settings
from taxi_mlops.output import emit, is_json, json_option
from taxi_mlops.services import free_port, http_json, start_service


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("taxi-mlops")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "taxi_mlops"]


def _say(text: str = "") -> None:
    if not is_json():
        click.echo(text)


def _run(args: list[str]) -> dict[str, Any]:
    """Run ``taxi-mlops ARGS --json`` and return its JSON; fail with its message if it fails."""
    _say(f"$ taxi-mlops {shlex.join(args)}")
    completed = subprocess.run(  # noqa: S603 - our own CLI
        [*_cli(), *args, "--json"], capture_output=True, text=True, check=False
    )
    try:
        result = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise TaxiMlopsError(
            f"`taxi-mlops {shlex.join(args)}` failed:\n{completed.stderr[-3000:]}"
        ) from None
    if completed.returncode != 0:
        raise TaxiMlopsError(f"`taxi-mlops {shlex.join(args)}`: {result.get('error')}")
    return result


def _month_files(
    data_dir: str | None, months: list[str], rows: int, seed: int, out_dir: Path
) -> list[str]:
    if data_dir:
        return [str(Path(data_dir) / f"yellow_tripdata_{m}.parquet") for m in months]
    files = []
    for i, month in enumerate(months):
        path = out_dir / f"yellow_tripdata_{month}.parquet"
        _run(
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
            ]
        )
        files.append(str(path))
    return files


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False),
    help="Folder of real TLC files (e.g. ../shared/data/tlc-yellow-sample). "
    "Default: generated data.",
)
@click.option("--train-month", default="2019-01", show_default=True)
@click.option("--val-month", default="2019-02", show_default=True)
@click.option(
    "--rows",
    type=click.IntRange(min=1000),
    default=50_000,
    show_default=True,
    help="Trips per generated month.",
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Level-2 search budget per model family.",
)
@json_option
def demo(
    data_dir: str | None, train_month: str, val_month: str, rows: int, seed: int, trials: int
) -> None:
    """Run levels 0 to 4 end to end and show what each did."""
    settings = get_settings()
    started = time.perf_counter()
    results: dict[str, Any] = {"home": str(settings.home)}
    source = data_dir or f"generated ({rows} trips/month, seed {seed})"
    _say(f"taxi-mlops demo: data = {source}; state under {settings.home}\n")

    _say("== Data: load and validate both months (shared/) ==")
    train_file, val_file = _month_files(
        data_dir, [train_month, val_month], rows, seed, settings.generated_data_dir
    )
    for name, path in (("train", train_file), ("val", val_file)):
        report = _run(["data", "validate", path])
        results[f"validate_{name}"] = report
        _say(
            f"   {report['rows_out']} of {report['rows_in']} rows valid; "
            f"dropped {json.dumps(report['dropped'])}"
        )

    _say("\n== Level 0: the notebook, run top to bottom ==")
    level0 = _run(["level0", "run", "--train", train_file, "--val", val_file])
    results["level0"] = level0
    _say(f"   validation RMSE {level0['val_rmse']:.3f} min; pickle at {level0['model_path']}")

    _say("\n== Level 1: a tested training script and a gunicorn service ==")
    model_path = settings.models_dir / "level1" / "model.joblib"
    level1 = _run(
        ["level1", "train", "--train", train_file, "--val", val_file, "--out", str(model_path)]
    )
    results["level1_train"] = level1
    _say(
        f"   validation RMSE {level1['val_rmse']:.3f} min (train {level1['train_rmse']:.3f}); "
        f"model at {level1['model_path']}"
    )
    results["level1_serve"] = _serve_and_query(model_path, settings.logs_dir)

    _say("\n== Level 2: a Prefect training pipeline, MLflow tracking and registry ==")
    level2 = _run(
        ["level2", "train", "--train", train_file, "--val", val_file, "--trials", str(trials)]
    )
    results["level2"] = level2
    for family, found in level2["families"].items():
        _say(f"   {family:<7} best validation RMSE {found['val_rmse']:.3f}")
    registered = level2["registered"]
    _say(
        f"   best: {level2['best']['family']}, {level2['improvement_vs_baseline']:.1%} below the "
        f"baseline; registered {registered['name']} v{registered['version']} as "
        f"{', '.join(registered['aliases'])}"
    )
    history = _run(["level2", "history"])
    results["level2_history"] = history["events"]
    for event in history["events"][-2:]:
        _say(
            f"   history: {event['alias']} {event['action']} -> v{event['to_version']}: "
            f"{event['reason']}"
        )
    _say("   browse the runs: taxi-mlops level2 ui  (then open http://127.0.0.1:5000)")

    results["level3"] = _level3(train_file, val_file, settings.logs_dir)
    results["level4"] = _level4(data_dir, seed, settings.home)

    results["seconds"] = round(time.perf_counter() - started, 1)
    summary = [
        "",
        "== Summary ==",
        f"{'level':<8}{'validation RMSE':>16}  what you have",
        f"{'0':<8}{level0['val_rmse']:>16.3f}  a notebook and a pickle; nothing tracked",
        f"{'1':<8}{level1['val_rmse']:>16.3f}  a tested script, a model with metadata, "
        "a gunicorn service with metrics",
        f"{'2':<8}{level2['best']['val_rmse']:>16.3f}  every trial tracked in MLflow; "
        f"registry v{registered['version']} ({', '.join(registered['aliases'])}) with history",
        f"{'3':<8}{'':>16}  blue/green from the registry, A/B evidence, "
        f"{results['level3']['decision']} in one command",
        f"{'4':<8}{results['level4']['automated_rmse']:>16.3f}  drift noticed, retrained, "
        f"canary judged, {results['level4']['promotions']} promotion(s), no human "
        f"(static model: {results['level4']['static_rmse']:.3f}, last replayed month)",
        f"done in {results['seconds']} s. Walkthroughs: level0_notebook/, level1_devops/, "
        "level2_training/, level3_deployment/, level4_automation/ (README.md in each)",
    ]
    emit({"ok": True, **results}, summary)


def _level4(data_dir: str | None, seed: int, home: Path) -> dict[str, Any]:
    _say("\n== Level 4: drift monitoring, retraining and a gated canary, with no human ==")
    out = home / "replays" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    args = ["level4", "replay", "--months", "2019-01..2019-04"]
    args += ["--inject-drift", "2019-02:slower=1.5", "--out", str(out), "--seed", str(seed)]
    args += ["--data-dir", data_dir] if data_dir else ["--rows", "6000"]
    result = _run(args)
    _say("   month    static L1  static champion  automated  decision")
    for row in result["table"]:
        _say(
            f"   {row['month']}  {row['rmse_static_level1']:>9.3f}  "
            f"{row['rmse_static_champion']:>15.3f}  {row['rmse_automated']:>9.3f}  "
            f"{row['action']} ({row['rule']})"
        )
    _say(f"   plot: {result['files']['plot']}")
    _say(f"   Evidently reports: {result['files']['reports']}")
    _say(f"   decision log: TAXI_MLOPS_HOME={out} taxi-mlops level4 decisions")
    last = result["table"][-1]
    return {
        "out_dir": result["out_dir"],
        "promotions": result["promotions"],
        "table": result["table"],
        "files": result["files"],
        "automated_rmse": last["rmse_automated"],
        "static_rmse": last["rmse_static_champion"],
    }


def _serve_and_query(model_path: Path, logs_dir: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["level1", "serve", "--model", str(model_path), "--port", str(port)]
    _say(f"$ taxi-mlops {shlex.join(args)} &")
    service = start_service([*_cli(), *args], url, logs_dir / f"demo-level1-{port}.log")
    with service:
        ride = {"ride_id": "demo-1", "PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.1}
        status, answer = http_json("POST", f"{url}/predict", ride)
        _say(f"$ curl -X POST {url}/predict -d '{json.dumps(ride)}'")
        _say(f"   {status} {json.dumps(answer)}")
        bad = {"PULocationID": 0, "DOLocationID": 236, "trip_distance": -3}
        bad_status, bad_answer = http_json("POST", f"{url}/predict", bad)
        _say(f"$ curl -X POST {url}/predict -d '{json.dumps(bad)}'")
        _say(f"   {bad_status} {bad_answer.get('error') if isinstance(bad_answer, dict) else ''}")
        _, metrics_text = http_json("GET", f"{url}/metrics")
        counted = [
            line
            for line in str(metrics_text).splitlines()
            if line.startswith("taxi_level1_requests_total")
        ]
        _say(f"$ curl {url}/metrics   # Prometheus text; request counters:")
        for line in counted:
            _say(f"   {line}")
    _say(f"   service stopped (pid {service.pid})")
    return {"url": url, "prediction": answer, "bad_request_status": bad_status, "metrics": counted}


def _replay_rides(val_file: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Real-looking requests and their actual durations, from the validation month."""
    from shared.data.load import read_trip_file
    from shared.data.validate import ValidationBounds, clean_trips

    month = read_trip_file(val_file)
    clean, _ = clean_trips(month.frame, ValidationBounds(), month=month.month)
    sample = clean.sample(n=min(n, len(clean)), random_state=seed)
    return [
        {
            "ride_id": f"demo-{i}",
            "PULocationID": int(row.PULocationID),
            "DOLocationID": int(row.DOLocationID),
            "trip_distance": float(row.trip_distance),
            "pickup_datetime": row.pickup_datetime.isoformat(),
            "actual": float(row.duration),
        }
        for i, row in enumerate(sample.itertuples())
    ]


def _level3(train_file: str, val_file: str, logs_dir: Path) -> dict[str, Any]:
    _say("\n== Level 3: blue/green serving from the registry, with an A/B split ==")
    challenger = _run(
        [
            "level2",
            "train",
            "--train",
            train_file,
            "--val",
            val_file,
            "--models",
            "ridge",
            "--trials",
            "1",
        ]
    )
    version = challenger["registered"]["version"]
    _say(f"   a second model to try: v{version} ({challenger['best']['family']})")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ["level3", "serve", "--port", str(port)]
    _say(f"$ taxi-mlops {shlex.join(serve)} &")
    with start_service([*_cli(), *serve], url, logs_dir / f"demo-level3-{port}.log"):
        _run(["level3", "deploy", "--version", str(version), "--share", "50", "--url", url])
        rides = _replay_rides(val_file, 600, seed=7)
        variants: dict[str, int] = {}
        for ride in rides:
            actual = ride.pop("actual")
            _, answer = http_json("POST", f"{url}/predict", ride)
            variants[answer["variant"]] = variants.get(answer["variant"], 0) + 1
            http_json("POST", f"{url}/feedback", {"ride_id": ride["ride_id"], "duration": actual})
        _say(
            f"   replayed {len(rides)} rides of the validation month, actual durations as "
            f"feedback: {variants}"
        )
        report = _run(["level3", "ab-report", "--min-samples", "100", "--url", url])
        for variant, quality in report["variants"].items():
            _say(
                f"   {variant:<5} n={quality['n']:<4} RMSE {quality['rmse']:.3f} "
                f"[{quality['rmse_ci'][0]:.3f}, {quality['rmse_ci'][1]:.3f}]"
            )
        _say(f"   verdict: {report['verdict']} ({report['reason']})")
        decision = "promote" if report["verdict"] == "green_better" else "rollback"
        _run(["level3", decision, "--reason", f"A/B verdict: {report['verdict']}", "--url", url])
    _say(f"   {decision} done; service stopped")
    return {"version": version, "variants": variants, "report": report, "decision": decision}
