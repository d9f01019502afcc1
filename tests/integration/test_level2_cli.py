"""`taxi-mlops level2` as a user runs it: subprocesses, real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.services import free_port, http_json, start_service

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("cli_prefect")]
BIN = Path(sys.executable).parent
CLI = str(BIN / "taxi-mlops")
NAME = "taxi-trip-duration"


def run(home: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> dict:
    full_env = {**os.environ, "TAXI_MLOPS_HOME": str(home), **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)  # the CLI derives it from the home (or env below)
    full_env.pop("PREFECT_HOME", None)
    full_env.update(env or {})
    completed = subprocess.run(
        [CLI, *args, "--json"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=900,
        check=False,
    )
    assert (completed.returncode == 0) is ok, completed.stdout + completed.stderr[-4000:]
    assert "Traceback" not in completed.stderr
    return json.loads(completed.stdout)


def generated(*extra: str) -> list[str]:
    return [
        "level2",
        "train",
        "--generated",
        "--train-months",
        "2019-01",
        "--val-month",
        "2019-02",
        "--rows",
        "5000",
        "--trials",
        "2",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory, cli_prefect: str) -> Path:
    home = tmp_path_factory.mktemp("level2") / "home"
    run(home, *generated())
    return home


def test_history_and_status(trained_home: Path) -> None:
    history = run(trained_home, "level2", "history")
    assert [(e["alias"], e["to_version"]) for e in history["events"]] == [
        ("candidate", 1),
        ("champion", 1),
    ]
    status = run(trained_home, "level2", "status")
    assert status["aliases"] == {"candidate": 1, "champion": 1}
    assert status["versions"][0]["family"] in ("ridge", "hgb")


@pytest.mark.parametrize("command", ["status", "history"])
def test_a_registry_that_cannot_be_read_is_an_error_not_an_empty_registry(
    tmp_path: Path, command: str
) -> None:
    """Against an MLflow server that does not answer, `status` used to say "no aliases"."""
    unreachable = {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }
    out = run(tmp_path, "level2", command, env=unreachable, ok=False)
    assert out["error"].startswith("cannot read the model registry: API request to")


def test_unless_champion_trains_nothing_when_there_is_one(trained_home: Path) -> None:
    out = run(trained_home, *generated("--unless-champion"))
    assert out == {"ok": True, "skipped": True, "champion": 1}


def test_usage_errors_are_clean(tmp_path: Path) -> None:
    out = run(tmp_path, "level2", "train", "--train", "x.parquet", ok=False)
    assert "needs --val" in out["error"]
    out = run(tmp_path, *generated("--models", "forest"), ok=False)
    assert "model family 'forest'" in out["error"]


@pytest.mark.slow
def test_mlflow_models_serve_runs_the_champion_as_is(trained_home: Path) -> None:
    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{trained_home / 'mlflow' / 'mlflow.db'}",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # mlflow execs uvicorn from the venv
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with start_service(
        command,
        f"http://127.0.0.1:{port}",
        trained_home / "serve.log",
        health_path="/ping",
        env=env,
        timeout_s=120,
    ) as service:
        rides = [
            {
                "PULocationID": 161,
                "DOLocationID": 236,
                "trip_distance": 2.1,
                "pickup_datetime": "2019-02-11T08:30:00",
            },
            {
                "PULocationID": 132,
                "DOLocationID": 230,
                "trip_distance": 17.5,
                "pickup_datetime": "2019-02-11T03:10:00",
            },
        ]
        status, body = http_json("POST", f"{service.url}/invocations", {"dataframe_records": rides})
    assert status == 200, body
    short, airport = body["predictions"]
    assert 3 < short < airport < 90


def test_level2_ui_serves_the_local_store(trained_home: Path) -> None:
    port = free_port()
    env = {
        "TAXI_MLOPS_HOME": str(trained_home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{trained_home / 'mlflow' / 'mlflow.db'}",
    }
    with start_service(
        [CLI, "level2", "ui", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        trained_home / "ui.log",
        env=env,
        timeout_s=120,
    ) as service:
        status, body = http_json(
            "GET", f"{service.url}/api/2.0/mlflow/registered-models/get?name={NAME}"
        )
    assert status == 200
    assert {a["alias"] for a in body["registered_model"]["aliases"]} == {"candidate", "champion"}


@pytest.mark.slow
@pytest.mark.realdata
def test_real_months_champion_beats_the_course_by_25_percent(
    real_data: Path, tmp_path: Path
) -> None:
    result = run(
        tmp_path / "home",
        "level2",
        "train",
        "--data-dir",
        str(real_data),
        "--train-months",
        "2019-01..2019-03",
        "--val-month",
        "2019-04",
        # hgb's defaults already beat the course by ~28 % here, and a search starts from them
        "--models",
        "hgb",
        "--trials",
        "1",
    )
    assert result["improvement_vs_baseline"] >= 0.25, result["families"]
    assert result["best"]["val_rmse"] <= 0.75 * result["baseline"]["val_rmse"]
    assert result["registered"]["version"] == 1
    assert "champion" in result["registered"]["aliases"]
