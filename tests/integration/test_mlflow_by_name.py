"""`taxi-mlops level2 server` answers clients that call it by name (compose's `mlflow:5000`,
an internal DNS name in AWS): MLflow 3.17 refuses other Host headers than loopback and private
IPs with 403 on every API call, while `/health` still says OK."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

import pytest

from shared.services import free_port, start_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def status_for_host(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("allowed", ["", "mlflow.taxi.internal"])
def test_clients_calling_the_server_by_name(tmp_path: Path, allowed: str) -> None:
    port = free_port()
    env = {"TAXI_MLOPS_HOME": str(tmp_path / "home"), "TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS": allowed}
    command = [CLI, "level2", "server", "--port", str(port), "--workers", "1"]
    with start_service(
        command, f"http://127.0.0.1:{port}", tmp_path / "mlflow.log", env=env, timeout_s=120
    ):
        by_name = status_for_host(port, SEARCH, f"mlflow.taxi.internal:{port}")
        assert status_for_host(port, SEARCH, f"127.0.0.1:{port}") == 200  # loopback stays
        assert status_for_host(port, SEARCH, "evil.example") == 403
        assert status_for_host(port, "/health", "evil.example") == 200  # why it went unseen
    # unset: MLflow's default refuses the name; set: the name is served
    assert by_name == (200 if allowed else 403)
