"""`taxi-mlops level4 schedule`: the monitoring flow as a cron-scheduled Prefect deployment,
against a real `prefect server` on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.services import free_port, http_json, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


def test_schedule_registers_a_cron_deployment_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {
        "PREFECT_HOME": str(tmp_path / "prefect-server"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    with start_service(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        tmp_path / "prefect.log",
        health_path="/api/health",
        env=server_env,
        timeout_s=120,
    ):
        log = (tmp_path / "schedule.log").open("wb")
        process = subprocess.Popen(
            [
                str(BIN / "taxi-mlops"),
                "level4",
                "schedule",
                "--cron",
                "*/15 * * * *",
                "--window-hours",
                "0.25",
                "--name",
                "watch",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PREFECT_API_URL": api, "TAXI_MLOPS_HOME": str(tmp_path / "home")},
            start_new_session=True,
        )
        try:
            deployments: list = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not deployments:
                assert process.poll() is None, (tmp_path / "schedule.log").read_text()
                _, deployments = http_json("POST", f"{api}/deployments/filter", {"limit": 5})
                time.sleep(1)
            assert [d["name"] for d in deployments] == ["watch"], deployments
            (deployment,) = deployments
            assert deployment["parameters"]["window_hours"] == 0.25
            crons = [s["schedule"].get("cron") for s in deployment["schedules"]]
            assert crons == ["*/15 * * * *"]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            log.close()
