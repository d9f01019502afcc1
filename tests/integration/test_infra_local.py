"""`infra/envs/local`: Terraform (1.0.3, null provider from a plugin dir, offline) brings the
system up on this machine, shifts traffic with a second apply, and `destroy` leaves nothing
running. State and Terraform's working data stay in a temp folder, not in the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from level3_deployment.client import wait_until_served
from shared.services import free_port, http_json
from taxi_mlops.stack.processes import alive  # a zombie counts as gone

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = str(ROOT / "infra" / "scripts" / "terraform.sh")
ENV_DIR = "-chdir=infra/envs/local"
BIN = Path(sys.executable).parent


def terraform(tmp_path: Path, *args: str, timeout: float = 600) -> str:
    completed = subprocess.run(
        [TERRAFORM, ENV_DIR, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_DATA_DIR": str(tmp_path / "tf-data")},
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return completed.stdout


def test_apply_serves_shift_traffic_and_destroy_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mlflow_port, level3_port = free_port(), free_port()
    variables = [
        "-var", f"home={home}",
        "-var", f"bin_dir={BIN}",
        "-var", f"mlflow_port={mlflow_port}",
        "-var", f"level3_port={level3_port}",
        "-var", "monitoring_cron=*/30 * * * *",
    ]  # fmt: skip
    state = ["-state", str(tmp_path / "terraform.tfstate")]
    common = ["-input=false", "-no-color", *state, *variables]
    terraform(tmp_path, "init", "-input=false", "-no-color")
    terraform(tmp_path, "validate", "-no-color")
    terraform(tmp_path, "apply", "-auto-approve", *common)
    url = f"http://127.0.0.1:{level3_port}"
    # a PID file holds the PID, then its start time (service.sh's identity check)
    pid_files = (home / "run" / "terraform").glob("*.pid")
    pids = {p.stem: int(p.read_text().split()[0]) for p in pid_files}
    assert set(pids) == {"mlflow", "level3", "level4-schedule"}
    try:
        ride = {"ride_id": "tf-1", "PULocationID": 161, "DOLocationID": 236, "trip_distance": 2}
        status, answer = http_json("POST", f"{url}/predict", ride)
        assert status == 200 and answer["variant"] == "blue", answer

        # a second version in the same registry, then a second apply routes 30 % to it
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        trained = subprocess.run(
            [str(BIN / "taxi-mlops"), "level2", "train", "--generated", "--train-months",
             "2019-01", "--val-month", "2019-02", "--rows", "5000", "--models", "ridge",
             "--trials", "1", "--json"],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "TAXI_MLOPS_HOME": str(home), "MLFLOW_TRACKING_URI": mlflow_url},
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr[-3000:]
        version = json.loads(trained.stdout)["registered"]["version"]
        terraform(
            tmp_path, "apply", "-auto-approve", *common,
            "-var", f"green_version={version}", "-var", "green_share=30",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        health: dict = {}
        while time.monotonic() < deadline:
            _, health = http_json("GET", f"{url}/health")
            if health.get("green") == version:
                break
            time.sleep(0.3)
        assert (health["green"], health["green_percent"], health["mode"]) == (version, 30, "ab")
        wait_until_served(url, health, timeout_s=30)  # by every worker, not only this one
        answers = [
            http_json("POST", f"{url}/predict", {**ride, "ride_id": f"tf-{i}"})[1]["variant"]
            for i in range(200)
        ]
        assert 30 < answers.count("green") < 100
        outputs = json.loads(terraform(tmp_path, "output", "-json", "-no-color", *state))
        assert outputs["split"]["value"] == {"green_version": version, "green_share": 30}
    finally:
        terraform(tmp_path, "destroy", "-auto-approve", *common)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not list((home / "run" / "terraform").glob("*.pid"))
