"""One class per stack component: how it starts, how it is known to be healthy, how it stops.

Health is always a real request: PostgreSQL answers ``pg_isready``, the S3 store lists its
bucket, MLflow and Prefect answer their health endpoints, the worker is ONLINE in its pool
according to the Prefect API, a replica answers ``/health`` with its models loaded, nginx
answers its own endpoint and a proxied ``/health``.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError, TaxiMlopsError
from shared.services import http_json

from . import nginx, postgres
from .plan import DATABASES, DB_USER, POOL, Plan
from .processes import alive, read_pid, start_detached, stop_group

logger = logging.getLogger(__name__)

#: the database password, read (or, on a new dev stack, generated) only when a component
#: starts: `stack status` and `stack down` never create one
Secret = Callable[[], str]


class StackError(TaxiMlopsError):
    """A component did not start or become healthy."""


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def _request(
    url: str, method: str = "GET", body: object = None, timeout: float = 3.0
) -> tuple[int, object]:
    """A health probe: (status, answer), or (0, why) when nothing answers (URLError, a reset or
    a timeout: all OSError)."""
    try:
        return http_json(method, url, body, timeout=timeout)
    except OSError as exc:
        return 0, str(exc)


def wait_until(check: Callable[[], Health], timeout_s: float, what: str, log: str) -> Health:
    deadline = time.monotonic() + timeout_s
    health = check()
    while not health.ok and time.monotonic() < deadline:
        time.sleep(0.3)
        health = check()
    if not health.ok:
        raise StackError(f"{what} not healthy after {timeout_s:.0f} s ({health.detail}); see {log}")
    return health


class Component:
    name: str
    port: int | None = None
    start_timeout_s: float = 60.0

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    # subclasses: command()/env() for a plain process, or override start/stop/pid
    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return self.plan.base_env()

    def health(self) -> Health:
        raise NotImplementedError

    def pid(self) -> int | None:
        pid = read_pid(self.plan.pidfile(self.name))
        return pid if alive(pid) else None

    @property
    def log_path(self) -> str:
        return str(self.plan.log(self.name))

    def start(self) -> None:
        start_detached(
            self.command(),
            env=self.env(),
            log_path=self.plan.log(self.name),
            pid_path=self.plan.pidfile(self.name),
            cwd=self.plan.root,
        )

    def begin(self) -> str | None:
        """Start unless healthy or already starting; None when there is nothing to wait for."""
        if self.health().ok:
            return None
        if self.pid() is None:
            self.start()
            return "started"
        return "was starting"

    def wait(self) -> None:
        wait_until(self.health, self.start_timeout_s, self.name, self.log_path)

    def ensure(self) -> str:
        """Start unless healthy; wait until healthy. Returns what was done."""
        action = self.begin()
        if action is None:
            return "already running"
        self.wait()
        return action

    def stop(self) -> str:
        pid = read_pid(self.plan.pidfile(self.name))
        if pid is None:
            return "not running"
        outcome = stop_group(pid)
        self.plan.pidfile(self.name).unlink(missing_ok=True)
        return outcome

    def describe(self) -> dict[str, object]:
        health = self.health()
        return {
            "name": self.name,
            "pid": self.pid(),
            "port": self.port,
            "healthy": health.ok,
            "detail": health.detail,
            "log": self.log_path,
        }


class Postgres(Component):
    name = "postgres"

    def __init__(self, plan: Plan, bin_dir: Path | None, password: Secret) -> None:
        super().__init__(plan)
        self.port = plan.postgres_port
        self.password = password
        self.cluster = postgres.Cluster(
            bin_dir=postgres.find_bin_dir(bin_dir),
            root=plan.postgres_root,
            port=plan.postgres_port,
            user=DB_USER,
            env=plan.base_env(),
        )

    @property
    def log_path(self) -> str:
        return str(self.cluster.log_path)

    def pid(self) -> int | None:
        pid = self.cluster.pid()
        return pid if alive(pid) else None

    def health(self) -> Health:
        if self.cluster.ready():
            return Health(True, f"accepting connections on 127.0.0.1:{self.port}")
        return Health(False, "not accepting connections")

    def ensure(self) -> str:
        action = "already running"
        if not self.cluster.initialised():
            self.cluster.init(self.password())
            action = "created and started"
        if not self.health().ok:
            self.cluster.start()
            action = "started" if action == "already running" else action
        wait_until(self.health, 60, self.name, self.log_path)
        made = [d for d in DATABASES if self.cluster.ensure_database(d, self.password())]
        return action + (f"; created databases {', '.join(made)}" if made else "")

    def stop(self) -> str:
        return self.cluster.stop() if self.pid() is not None else "not running"


class ObjectStore(Component):
    """moto's S3 server (objects persisted by its request recorder), or an S3 endpoint from
    the settings, which the stack only checks and gives a bucket."""

    name = "s3"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.port = plan.s3_port if plan.moto else None

    def command(self) -> list[str]:
        return self.plan.moto_command()

    def env(self) -> dict[str, str]:
        return self.plan.moto_env()

    def _client(self) -> object:
        import boto3
        from botocore.config import Config

        # moto's credentials; for a real endpoint none here: boto3's chain (AWS_* variables,
        # a profile, an instance role)
        env = self.plan.s3_env()
        return boto3.client(
            "s3",
            endpoint_url=self.plan.s3_url,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            region_name=env["AWS_DEFAULT_REGION"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def _bucket_health(self) -> Health:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().head_bucket(Bucket=self.plan.bucket)  # type: ignore[attr-defined]
        except ClientError as exc:
            return Health(False, f"bucket {self.plan.bucket}: {exc.response['Error']['Code']}")
        except BotoCoreError as exc:
            return Health(False, str(exc))
        return Health(True, f"bucket {self.plan.bucket} at {self.plan.s3_url}")

    def health(self) -> Health:
        return self._bucket_health()

    def pid(self) -> int | None:
        return super().pid() if self.plan.moto else None

    def ensure(self) -> str:
        if self.health().ok:
            return "already running"
        action = "external endpoint"
        if self.plan.moto:
            recording = self.plan.s3_recording
            # moto records every request (health checks too) once it runs: only a recording
            # from an earlier run holds objects to restore
            restore = recording.exists() and recording.stat().st_size > 0
            if self.pid() is None:
                recording.parent.mkdir(parents=True, exist_ok=True)
                self.start()
                action = "started"
            self._wait_for_moto()
            if restore:
                status, body = http_json(
                    "POST", f"{self.plan.s3_url}/moto-api/recorder/replay-recording", timeout=300
                )
                if status != 200:
                    raise StackError(f"s3: replaying {self.plan.s3_recording} failed: {body}")
                action += ", objects restored from its recording"
        if not self.health().ok:
            from botocore.exceptions import ClientError

            try:
                self._client().create_bucket(Bucket=self.plan.bucket)  # type: ignore[attr-defined]
            except ClientError as exc:
                raise StackError(f"s3: cannot create bucket {self.plan.bucket}: {exc}") from exc
            action += f", bucket {self.plan.bucket} created"
        wait_until(self.health, 30, self.name, self.log_path)
        return action

    def _wait_for_moto(self) -> None:
        def up() -> Health:
            status, _ = _request(f"{self.plan.s3_url}/moto-api/")
            return Health(status == 200, f"HTTP {status}")

        wait_until(up, 30, "s3 (moto)", self.log_path)

    def stop(self) -> str:
        return super().stop() if self.plan.moto else "external endpoint: left alone"


class HttpService(Component):
    health_path = "/health"
    url = ""

    def health(self) -> Health:
        status, body = _request(self.url + self.health_path)
        if status == 200:
            return Health(True, f"{self.url} healthy")
        return Health(False, f"{self.url}{self.health_path}: {status or body}")


class MlflowServer(HttpService):
    name = "mlflow"
    start_timeout_s = 120.0

    def __init__(self, plan: Plan, password: Secret) -> None:
        super().__init__(plan)
        self.port, self.url, self.password = plan.mlflow_port, plan.mlflow_url, password

    def command(self) -> list[str]:
        return self.plan.mlflow_command()

    def env(self) -> dict[str, str]:
        return self.plan.mlflow_env(self.password())


class PrefectServer(HttpService):
    name = "prefect"
    health_path = "/api/health"
    start_timeout_s = 240.0  # the first start migrates a new database

    def __init__(self, plan: Plan, password: Secret) -> None:
        super().__init__(plan)
        self.port, self.url, self.password = plan.prefect_port, plan.prefect_url, password

    def command(self) -> list[str]:
        return self.plan.prefect_command()

    def env(self) -> dict[str, str]:
        return self.plan.prefect_server_env(self.password())


class PrefectWorker(Component):
    name = "worker"
    start_timeout_s = 90.0

    def __init__(self, plan: Plan, password: Secret) -> None:
        super().__init__(plan)
        self.password = password

    def command(self) -> list[str]:
        return self.plan.worker_command()

    def env(self) -> dict[str, str]:
        return self.plan.worker_env(self.password())

    def health(self) -> Health:
        if self.pid() is None:
            return Health(False, "not running")
        status, body = _request(
            f"{self.plan.prefect_api_url}/work_pools/{POOL}/workers/filter", "POST", {}, timeout=5
        )
        if status != 200 or not isinstance(body, list):
            return Health(False, f"Prefect API: HTTP {status}")
        online = [w["name"] for w in body if w.get("status") == "ONLINE"]
        if online:
            return Health(True, f"ONLINE in pool {POOL} ({', '.join(online)})")
        return Health(False, f"no ONLINE worker in pool {POOL} yet")


class Replica(HttpService):
    start_timeout_s = 180.0

    def __init__(self, plan: Plan, index: int, password: Secret) -> None:
        super().__init__(plan)
        self.index, self.password = index, password
        self.name = f"level3-{index + 1}"
        self.port, self.url = plan.replica_port(index), plan.replica_url(index)

    def command(self) -> list[str]:
        return self.plan.replica_command(self.index)

    def env(self) -> dict[str, str]:
        return self.plan.replica_env(self.index, self.password())


class Nginx(HttpService):
    name = "nginx"
    health_path = "/nginx-health"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        self.port, self.url = plan.nginx_port, plan.level3_url
        self.binary = nginx.find_binary()

    @property
    def conf(self) -> Path:
        return self.plan.nginx_root / "nginx.conf"

    def write_config(self) -> None:
        root = self.plan.nginx_root
        user = nginx.prepare_temp(root / "temp")
        paths = nginx.NginxPaths(
            pid=str(root / "nginx.pid"),
            error_log=str(self.plan.log("nginx-error")),
            access_log=str(self.plan.log("nginx-access")),
            temp=str(root / "temp"),
        )
        upstreams = [f"127.0.0.1:{self.plan.replica_port(i)}" for i in range(self.plan.replicas)]
        self.conf.write_text(nginx.render(f"127.0.0.1:{self.port}", upstreams, paths, user=user))

    def command(self) -> list[str]:
        if self.binary is None:
            raise ConfigError("nginx is not installed: `apt-get install nginx`")
        return nginx.command(
            self.binary, self.plan.nginx_root, self.conf, str(self.plan.log("nginx-error"))
        )

    def start(self) -> None:
        self.write_config()
        self.plan.logs.mkdir(parents=True, exist_ok=True)
        check = subprocess.run(  # noqa: S603 - nginx -t on the config just written
            [*self.command()[:-2], "-t", "-q"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise StackError(f"nginx: {self.conf} is invalid: {check.stderr.strip()}")
        super().start()

    def health(self) -> Health:
        own = super().health()
        if not own.ok:
            return own
        status, body = _request(f"{self.url}/health")
        if status != 200:
            return Health(False, f"nginx up, but no replica answers /health: {status or body}")
        detail = body.get("status") if isinstance(body, dict) else body
        return Health(True, f"{self.url} -> {self.plan.replicas} replica(s), /health {detail}")
