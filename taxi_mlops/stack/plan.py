"""What the stack runs, where: ports, folders and each component's environment, derived from
the settings alone (pure: nothing here starts or reads anything but the password file).

Ports are offsets from TAXI_MLOPS_STACK_PORT_BASE (default 18000), every one on 127.0.0.1:

======================  ========  ==========================================================
component               port      what talks to it
======================  ========  ==========================================================
nginx (level-3 URL)     base      callers, `level3 deploy/promote/...`, level 4
level-3 replicas        base+1..  nginx only
MLflow server           base+10   training (clients, the worker), the replicas, level 4
Prefect server          base+20   `level2 train --on-worker`, the worker, level 4
PostgreSQL              base+30   the MLflow and Prefect servers; the replicas, the worker,
                                  level 4 and the CLI (operational state)
S3 (moto)               base+40   the MLflow server (it proxies artifacts for everyone else)
======================  ========  ==========================================================
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from shared.errors import ConfigError
from shared.settings import Settings, admin_token, feedback_token

from .processes import MARKER

DB_USER = "taxi"
#: never passed from the caller's environment to a stack process: another store or home
_NOT_INHERITED = (
    "PREFECT_",
    "MLFLOW_TRACKING_URI",
    "TAXI_MLOPS_MLFLOW_",
    "TAXI_MLOPS_HOME",
    "TAXI_MLOPS_STATE_DB_URL",
)
#: the MLflow backend, the Prefect server's database, and the operational state (level 3's
#: deployments and prediction log, level 4's loop) that every replica and client shares
DATABASES = ("mlflow", "prefect", "state")
STATE_DATABASE = "state"
POOL = "taxi-training"
#: moto accepts any credentials; a real endpoint takes the usual AWS_* variables instead
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto"}
AWS_REGION = "us-east-1"


@dataclass(frozen=True)
class Plan:
    home: Path
    root: Path  # the stack's folder: <home>/stack
    bin_dir: Path  # the virtualenv's bin: taxi-mlops, mlflow, prefect, moto_server
    base_port: int
    replicas: int
    s3_endpoint: str | None  # None: start moto
    bucket: str
    level3_workers: int = 2

    # -------------------------------------------------------------------------- ports
    @property
    def nginx_port(self) -> int:
        return self.base_port

    def replica_port(self, index: int) -> int:
        return self.base_port + 1 + index

    @property
    def mlflow_port(self) -> int:
        return self.base_port + 10

    @property
    def prefect_port(self) -> int:
        return self.base_port + 20

    @property
    def postgres_port(self) -> int:
        return self.base_port + 30

    @property
    def s3_port(self) -> int:
        return self.base_port + 40

    # --------------------------------------------------------------------------- URLs
    @property
    def level3_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.replica_port(index)}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def s3_url(self) -> str:
        return self.s3_endpoint or f"http://127.0.0.1:{self.s3_port}"

    @property
    def moto(self) -> bool:
        return self.s3_endpoint is None

    # ------------------------------------------------------------------------ folders
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "run"

    @property
    def postgres_root(self) -> Path:
        return self.root / "postgres"

    @property
    def s3_recording(self) -> Path:
        return self.root / "s3" / "recording.jsonl"

    @property
    def nginx_root(self) -> Path:
        return self.root / "nginx"

    @property
    def password_file(self) -> Path:
        return self.root / "secrets" / "db_password"

    @property
    def stack_id(self) -> str:
        return str(self.root)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def process_home(self, name: str) -> Path:
        """The process's own TAXI_MLOPS_HOME: scratch only. Nothing in it is shared (no
        database, no model): every process reaches the others through URLs alone."""
        return self.root / "homes" / name

    def pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    # -------------------------------------------------------------------- environment
    def base_env(self) -> dict[str, str]:
        """What every stack process gets: this environment minus anything that would point
        it at another store, plus the stack marker."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(
            {
                MARKER: self.stack_id,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
        )
        return env

    def client_env(self, password: str) -> dict[str, str]:
        """The settings that point any taxi-mlops command, in any home, at this stack (`stack
        env`): URLs and the state database's credentials, nothing on disk."""
        return {
            "TAXI_MLOPS_STATE_DB_URL": self.state_url(password),
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": self.prefect_api_url,
            "TAXI_MLOPS_LEVEL3_URL": self.level3_url,
            # a deployment change is done once every worker of every replica serves it
            "TAXI_MLOPS_LEVEL3_WORKERS": str(self.replicas * self.level3_workers),
        }

    def s3_env(self) -> dict[str, str]:
        """How a client reaches the object store (endpoint, region, moto's credentials)."""
        env = {"MLFLOW_S3_ENDPOINT_URL": self.s3_url, "AWS_DEFAULT_REGION": AWS_REGION}
        if self.moto:
            env.update(MOTO_CREDENTIALS)
        return env

    def database_url(self, driver: str, database: str, password: str) -> str:
        credentials = f"{DB_USER}:{quote(password, safe='')}"
        return f"{driver}://{credentials}@127.0.0.1:{self.postgres_port}/{database}"

    def state_url(self, password: str) -> str:
        return self.database_url("postgresql+psycopg2", STATE_DATABASE, password)

    def process_env(self, name: str, password: str) -> dict[str, str]:
        """A taxi-mlops process of the stack: its own empty home, the stack's URLs."""
        home = self.process_home(name)
        return {
            **self.base_env(),
            **self.client_env(password),
            "TAXI_MLOPS_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
        }

    def mlflow_env(self, password: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "TAXI_MLOPS_HOME": str(self.process_home("mlflow")),
            **self.s3_env(),
            "TAXI_MLOPS_DB_HOST": "127.0.0.1",
            "TAXI_MLOPS_DB_PORT": str(self.postgres_port),
            "TAXI_MLOPS_DB_NAME": "mlflow",
            "TAXI_MLOPS_DB_USER": DB_USER,
            "TAXI_MLOPS_DB_PASSWORD": password,
            "TAXI_MLOPS_MLFLOW_ARTIFACTS_DESTINATION": f"s3://{self.bucket}/mlflow",
        }

    def prefect_server_env(self, password: str) -> dict[str, str]:
        return {
            **self.base_env(),
            "PREFECT_HOME": str(self.root / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url(
                "postgresql+asyncpg", "prefect", password
            ),
        }

    def worker_env(self, password: str) -> dict[str, str]:
        """The worker, and the flow runs it starts (they inherit its environment)."""
        return self.process_env("worker", password)

    def replica_env(self, index: int, password: str) -> dict[str, str]:
        return self.process_env(f"level3-{index + 1}", password)

    def moto_env(self) -> dict[str, str]:
        # The recorder appends every request to a file; replaying it at start restores the
        # objects, so artifacts survive `stack down` (moto itself keeps them in memory).
        return {
            **self.base_env(),
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(self.s3_recording),
        }

    # ------------------------------------------------------------------------ commands
    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def mlflow_command(self) -> list[str]:
        return [
            self.tool("taxi-mlops"),
            "level2",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.mlflow_port),
            "--workers",
            "2",
        ]

    def prefect_command(self) -> list[str]:
        return [
            self.tool("prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.prefect_port),
        ]

    def worker_command(self) -> list[str]:
        return [
            self.tool("prefect"),
            "worker",
            "start",
            "--pool",
            POOL,
            "--type",
            "process",
            "--name",
            "taxi-mlops-worker-1",
        ]

    def replica_command(self, index: int) -> list[str]:
        return [
            self.tool("taxi-mlops"),
            "level3",
            "serve",
            "--port",
            str(self.replica_port(index)),
            "--workers",
            str(self.level3_workers),
        ]

    def moto_command(self) -> list[str]:
        return [self.tool("moto_server"), "-H", "127.0.0.1", "-p", str(self.s3_port)]


def plan_from(settings: Settings, bin_dir: Path | None = None) -> Plan:
    # the replicas refuse to start without real tokens outside dev
    admin_token(settings)
    feedback_token(settings)
    return Plan(
        home=settings.home,
        root=settings.stack_dir,
        bin_dir=bin_dir or Path(sys.executable).parent,
        base_port=settings.stack_port_base,
        replicas=settings.stack_replicas,
        s3_endpoint=settings.s3_endpoint_url,
        bucket=settings.s3_bucket,
    )


def database_password(plan: Plan, settings: Settings) -> str:
    """TAXI_MLOPS_DB_PASSWORD if set; in dev, else one generated at the first `stack up` and
    kept in the stack folder (0600). Outside dev it must be set: no generated secrets there."""
    given = settings.db_password.get_secret_value()
    if given:
        return given
    if settings.env != "dev":
        raise ConfigError("TAXI_MLOPS_DB_PASSWORD must be set when TAXI_MLOPS_ENV=prod")
    if plan.password_file.exists():
        return plan.password_file.read_text().strip()
    plan.password_file.parent.mkdir(parents=True, exist_ok=True)
    plan.password_file.parent.chmod(0o700)
    password = secrets.token_urlsafe(24)
    descriptor = os.open(plan.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password)
    return password
