"""`taxi-mlops level2 server`: where the MLflow server keeps runs and artifacts."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from level2_training.tracking_server import artifacts_destination, backend_store_uri, server_command
from shared.errors import ConfigError
from shared.settings import Settings


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings(home=tmp_path, **env)


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert backend_store_uri(s) == f"sqlite:///{tmp_path / 'mlflow-server' / 'mlflow.db'}"
    assert artifacts_destination(s) == str(tmp_path / "mlflow-server" / "artifacts")


def test_postgres_credentials_are_quoted(tmp_path: Path) -> None:
    password = "p@ss/w%rd:#1"
    s = settings(tmp_path, db_host="db.internal", db_user="mlflow", db_password=password)
    uri = urlsplit(backend_store_uri(s))
    assert uri.scheme == "postgresql+psycopg2"
    assert (uri.hostname, uri.port, uri.path) == ("db.internal", 5432, "/mlflow")
    assert (unquote(uri.username or ""), unquote(uri.password or "")) == ("mlflow", password)


def test_a_db_host_without_credentials_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TAXI_MLOPS_DB_USER and TAXI_MLOPS_DB_PASSWORD"):
        backend_store_uri(settings(tmp_path, db_host="db.internal"))


def test_cloud_destinations_pass_through(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        mlflow_backend_store_uri="postgresql://u:p@h/mlflow",
        mlflow_artifacts_destination="s3://bucket/mlflow",
    )
    command = server_command(s, "0.0.0.0", 5000, 2)  # noqa: S104 - a container's listener
    assert command[1:5] == [
        "server",
        "--backend-store-uri",
        "postgresql://u:p@h/mlflow",
        "--artifacts-destination",
    ]
    assert command[5] == "s3://bucket/mlflow"
    assert command[-4:] == ["--port", "5000", "--workers", "2"]


def test_names_clients_call_the_server_by_are_allowed_with_loopback(tmp_path: Path) -> None:
    from level2_training.tracking_server import allowed_hosts

    assert allowed_hosts(settings(tmp_path)) == []  # MLflow's default: loopback, private IPs
    s = settings(tmp_path, mlflow_allowed_hosts="mlflow, mlflow.taxi.internal:5000")
    hosts = allowed_hosts(s)
    assert {"mlflow", "mlflow:*", "mlflow.taxi.internal:5000", "127.0.0.1:*"} <= set(hosts)
    command = server_command(s, "0.0.0.0", 5000, 2)  # noqa: S104 - a container's listener
    assert command[command.index("--allowed-hosts") + 1] == ",".join(hosts)
    with pytest.raises(ConfigError, match="TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS"):
        allowed_hosts(settings(tmp_path, mlflow_allowed_hosts="http://mlflow"))
