"""The scale-out stack's pieces that need no servers: its plan (ports, environments, secrets),
the nginx configuration, and starting/stopping/finding its processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared.errors import ConfigError
from shared.settings import Settings
from taxi_mlops.cli import main
from taxi_mlops.stack import nginx
from taxi_mlops.stack.plan import MOTO_CREDENTIALS, database_password, plan_from
from taxi_mlops.stack.processes import (
    MARKER,
    alive,
    marked_processes,
    read_pid,
    start_detached,
    stop_group,
)


def test_ports_are_offsets_of_one_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_STACK_PORT_BASE", "24000")
    plan = plan_from(Settings())
    assert (plan.nginx_port, plan.replica_port(0), plan.replica_port(1)) == (24000, 24001, 24002)
    assert (plan.mlflow_port, plan.prefect_port, plan.postgres_port, plan.s3_port) == (
        24010,
        24020,
        24030,
        24040,
    )
    assert plan.client_env("pw") == {
        "TAXI_MLOPS_STATE_DB_URL": "postgresql+psycopg2://taxi:pw@127.0.0.1:24030/state",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:24010",
        "PREFECT_API_URL": "http://127.0.0.1:24020/api",
        "TAXI_MLOPS_LEVEL3_URL": "http://127.0.0.1:24000",
        "TAXI_MLOPS_LEVEL3_WORKERS": "4",  # 2 replicas x 2 workers
    }


def test_the_mlflow_server_gets_postgres_and_s3_and_secrets_are_quoted(isolated_home: Path) -> None:
    plan = plan_from(Settings())
    env = plan.mlflow_env("p@ss/w%rd")
    assert env["TAXI_MLOPS_MLFLOW_ARTIFACTS_DESTINATION"] == "s3://taxi-mlops-artifacts/mlflow"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == plan.s3_url
    assert env["TAXI_MLOPS_DB_PASSWORD"] == "p@ss/w%rd" and env[MARKER] == plan.stack_id
    url = plan.prefect_server_env("p@ss/w%rd")["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert (
        url == f"postgresql+asyncpg://taxi:p%40ss%2Fw%25rd@127.0.0.1:{plan.postgres_port}/prefect"
    )


def test_a_real_s3_endpoint_gets_the_users_credentials_not_motos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_MLOPS_S3_ENDPOINT_URL", "https://s3.example.org/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    plan = plan_from(Settings())
    env = plan.mlflow_env("x")
    assert not plan.moto and env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.example.org"
    assert env["AWS_ACCESS_KEY_ID"] == "mine" != MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"]


def test_stack_processes_never_inherit_another_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/other.db")
    plan = plan_from(Settings())
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_URL", "sqlite:////tmp/other-state.db")
    for env in (plan.worker_env("x"), plan.replica_env(0, "x")):
        assert env["PREFECT_API_URL"] == plan.prefect_api_url
        assert env["MLFLOW_TRACKING_URI"] == plan.mlflow_url
        assert env["TAXI_MLOPS_STATE_DB_URL"] == plan.state_url("x")
    assert "PREFECT_API_URL" not in plan.prefect_server_env("x")


def test_a_dev_password_is_generated_once_and_private(isolated_home: Path) -> None:
    settings = Settings()
    plan = plan_from(settings)
    first = database_password(plan, settings)
    assert len(first) >= 24 and database_password(plan, settings) == first
    assert stat.S_IMODE(plan.password_file.stat().st_mode) == 0o600


def test_prod_requires_the_password_to_be_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_ENV", "prod")
    monkeypatch.setenv("TAXI_MLOPS_ADMIN_TOKEN", "admin-" + "x" * 40)
    monkeypatch.setenv("TAXI_MLOPS_FEEDBACK_TOKEN", "labels-" + "y" * 40)
    settings = Settings()
    with pytest.raises(ConfigError, match="TAXI_MLOPS_DB_PASSWORD must be set"):
        database_password(plan_from(settings), settings)
    monkeypatch.setenv("TAXI_MLOPS_DB_PASSWORD", "given")
    settings = Settings()
    assert database_password(plan_from(settings), settings) == "given"


def test_prod_refuses_the_dev_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_ENV", "prod")
    with pytest.raises(ValueError, match="TAXI_MLOPS_ADMIN_TOKEN"):
        plan_from(Settings())


def test_nginx_retries_on_the_other_replica_with_the_same_request_id() -> None:
    text = nginx.render("127.0.0.1:8100", ["a:1", "b:2"], nginx.CONTAINER_PATHS)
    assert "server a:1 max_fails=1" in text and "server b:2 max_fails=1" in text
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert "proxy_set_header X-Request-Id $taxi_request_id;" in text
    with pytest.raises(ValueError, match="at least one upstream"):
        nginx.render("127.0.0.1:8100", [], nginx.CONTAINER_PATHS)


@pytest.mark.skipif(
    not nginx.find_binary(),
    reason="nginx is not installed",
)
def test_the_rendered_config_passes_nginx_t(tmp_path: Path) -> None:
    paths = nginx.NginxPaths(
        pid=str(tmp_path / "nginx.pid"),
        error_log=str(tmp_path / "error.log"),
        access_log=str(tmp_path / "access.log"),
        temp=str(tmp_path / "temp"),
    )
    user = nginx.prepare_temp(tmp_path / "temp")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx.render("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], paths, user=user))
    binary = nginx.find_binary()
    completed = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", paths.error_log],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def test_a_detached_process_is_found_by_marker_and_stopped_with_its_children(
    tmp_path: Path,
) -> None:
    stack_id = str(tmp_path / "stack")
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    pid = start_detached(
        [sys.executable, "-c", script],
        env={**os.environ, MARKER: stack_id},
        log_path=tmp_path / "p.log",
        pid_path=tmp_path / "p.pid",
    )
    assert read_pid(tmp_path / "p.pid") == pid
    deadline = time.monotonic() + 10
    while len(marked_processes(stack_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    found = marked_processes(stack_id)
    assert pid in found and len(found) == 2  # the child carries the marker too
    assert stop_group(pid, timeout_s=5) == "stopped"
    assert not alive(pid) and marked_processes(stack_id) == []
    assert stop_group(pid) == "not running"


def test_status_of_a_stack_never_started_is_all_down_and_creates_no_secret(
    isolated_home: Path,
) -> None:
    result = CliRunner().invoke(main, ["stack", "status", "--json"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.output)
    assert payload["ok"] is False and all(not c["healthy"] for c in payload["components"])
    assert not (isolated_home / "stack" / "secrets").exists()


def test_restart_names_the_components_it_knows(isolated_home: Path) -> None:
    result = CliRunner().invoke(main, ["stack", "restart", "mlfow"])
    assert result.exit_code == 2
    assert "no stack component 'mlfow' (one of: postgres, s3, mlflow" in result.output


def test_stack_env_prints_exports() -> None:
    result = CliRunner().invoke(main, ["stack", "env"])
    assert result.exit_code == 0
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:18010" in result.output


def test_every_stack_process_has_its_own_home_and_shares_only_urls(isolated_home: Path) -> None:
    plan = plan_from(Settings())
    homes = [
        plan.replica_env(0, "x")["TAXI_MLOPS_HOME"],
        plan.replica_env(1, "x")["TAXI_MLOPS_HOME"],
        plan.worker_env("x")["TAXI_MLOPS_HOME"],
        plan.process_env("cli", "x")["TAXI_MLOPS_HOME"],
        plan.mlflow_env("x")["TAXI_MLOPS_HOME"],
    ]
    assert len(set(homes)) == len(homes) and str(plan.home) not in homes
    assert all(Path(h).is_relative_to(plan.root / "homes") for h in homes)
    assert "TAXI_MLOPS_HOME" not in plan.base_env() and "TAXI_MLOPS_HOME" not in plan.client_env(
        "x"
    )
    assert plan.replica_env(0, "x")["PREFECT_HOME"].startswith(homes[0])
