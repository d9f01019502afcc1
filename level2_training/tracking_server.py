"""The command line of an MLflow tracking server for this project's settings: PostgreSQL (or
any SQLAlchemy URI) as the backend store, an artifact destination it proxies for clients."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

from shared.errors import ConfigError
from shared.settings import Settings


def backend_store_uri(settings: Settings) -> str:
    if settings.db_host:
        password = settings.db_password.get_secret_value()
        missing = [
            name
            for name, value in (
                ("TAXI_MLOPS_DB_USER", settings.db_user),
                ("TAXI_MLOPS_DB_PASSWORD", password),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"TAXI_MLOPS_DB_HOST is set but {' and '.join(missing)} is not")
        # Generated passwords (RDS) hold characters such as '@', '/' and '%'.
        credentials = f"{quote(settings.db_user or '', safe='')}:{quote(password, safe='')}"
        return (
            f"postgresql+psycopg2://{credentials}@{settings.db_host}:{settings.db_port}/"
            f"{quote(settings.db_name, safe='')}"
        )
    if settings.mlflow_backend_store_uri:
        return settings.mlflow_backend_store_uri
    return f"sqlite:///{settings.home / 'mlflow-server' / 'mlflow.db'}"


def artifacts_destination(settings: Settings) -> str:
    return settings.mlflow_artifacts_destination or str(
        settings.home / "mlflow-server" / "artifacts"
    )


#: what MLflow allows by default and a local health check or CLI needs (its private-IP
#: patterns are dropped once names are given: list them too if clients call by IP)
_LOOPBACK = ("localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[[]::1]:*")


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host headers the server accepts: the configured names (a bare name also with any
    port), then loopback; empty: MLflow's own default (loopback and private IPs)."""
    names = [h.strip() for h in settings.mlflow_allowed_hosts.split(",") if h.strip()]
    for name in names:
        if any(c.isspace() or c in "/@" for c in name):
            raise ConfigError(
                f"TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS: {name!r} is not a host or host:port"
            )
    if not names:
        return []
    with_ports = [n if ":" in n or n == "*" else f"{n}:*" for n in names]
    return list(dict.fromkeys([*names, *with_ports, *_LOOPBACK]))


def server_command(settings: Settings, host: str, port: int, workers: int) -> list[str]:
    hosts = allowed_hosts(settings)
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        backend_store_uri(settings),
        "--artifacts-destination",
        artifacts_destination(settings),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *(["--allowed-hosts", ",".join(hosts)] if hosts else []),
    ]
