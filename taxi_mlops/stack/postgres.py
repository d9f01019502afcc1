"""A private PostgreSQL cluster in the stack folder: initdb once, pg_ctl start/stop, on
127.0.0.1 only, password authentication (scram-sha-256) even over TCP on loopback.

PostgreSQL refuses to run as root; when this process is root, the server tools run as the
``postgres`` user (Debian's package creates it) through ``runuser``, and the cluster's folder
belongs to that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError, TaxiMlopsError

SERVER_USER = "postgres"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


class PostgresError(TaxiMlopsError):
    """The cluster could not be created, started or reached."""


def find_bin_dir(configured: Path | None) -> Path:
    """The folder with initdb and pg_ctl: the setting, else Debian's newest
    /usr/lib/postgresql/<major>/bin, else wherever initdb is on PATH."""
    if configured is not None:
        if not (configured / "initdb").exists():
            raise ConfigError(f"TAXI_MLOPS_PG_BIN_DIR={configured}: no initdb there")
        return configured
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ConfigError(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
        "`apt-get install postgresql`, or set TAXI_MLOPS_PG_BIN_DIR"
    )


@dataclass(frozen=True)
class Cluster:
    bin_dir: Path
    root: Path  # the cluster's folder: data/ and postgres.log inside
    port: int
    user: str
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def run_as(self) -> str | None:
        return SERVER_USER if os.geteuid() == 0 else None

    def _tool(self, name: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / name), *args]
        if self.run_as is None:
            return command
        return [RUNUSER, "-u", self.run_as, "--", *command]

    def _run(self, command: list[str], what: str, *, password: str | None = None) -> str:
        env = dict(self.env)
        if password is not None:
            env["PGPASSWORD"] = password
        completed = subprocess.run(  # noqa: S603 - fixed tool paths and arguments
            command, capture_output=True, text=True, env=env, check=False, timeout=120
        )
        if completed.returncode != 0:
            detail = (completed.stderr or completed.stdout).strip()[-800:]
            raise PostgresError(f"PostgreSQL: {what} failed: {detail} (log: {self.log_path})")
        return completed.stdout

    # ------------------------------------------------------------------------- lifecycle

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self, password: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        owner = None
        if self.run_as is not None:
            self._check_reachable_by_server_user()
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o700)
        # initdb reads the superuser's password from a file; it lives only for this call.
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as pwfile:
            pwfile.write(password)
        try:
            if owner is not None:
                os.chown(pwfile.name, owner.pw_uid, owner.pw_gid)
            self._run(
                self._tool(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile.name}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ),
                "initdb",
            )
        finally:
            Path(pwfile.name).unlink(missing_ok=True)

    def _check_reachable_by_server_user(self) -> None:
        """The server user must be able to reach the cluster's folder (a home under a 0700
        folder, such as pytest's temp dirs or /root, is not)."""
        probe = subprocess.run(  # noqa: S603
            [RUNUSER, "-u", SERVER_USER, "--", "test", "-x", str(self.root.parent)],
            check=False,
        )
        if probe.returncode != 0:
            raise ConfigError(
                f"PostgreSQL runs as the '{SERVER_USER}' user, which cannot reach "
                f"{self.root.parent}: allow traversal of its parent folders (chmod o+x) or put "
                "TAXI_MLOPS_HOME somewhere it can reach"
            )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}"
        self._run(
            self._tool(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ),
            "start",
        )

    def stop(self) -> str:
        if self.pid() is None:
            return "not running"
        self._run(
            self._tool("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"),
            "stop",
        )
        return "stopped"

    def pid(self) -> int | None:
        """The postmaster's PID while it runs."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, PermissionError, ValueError, IndexError):
            return None

    def ready(self) -> bool:
        completed = subprocess.run(  # noqa: S603
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
            env=self.env,
        )
        return completed.returncode == 0

    def ensure_database(self, name: str, password: str) -> bool:
        """Create database ``name`` owned by the stack's user unless it exists; True if made."""
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a plain database name")
        common = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        exists = self._run(
            [
                str(self.bin_dir / "psql"),
                *common,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{name}'",  # noqa: S608 - an identifier, checked above
            ],
            f"looking up database {name}",
            password=password,
        )
        if exists.strip() == "1":
            return False
        self._run(
            [str(self.bin_dir / "createdb"), *common, name],
            f"createdb {name}",
            password=password,
        )
        return True


@contextmanager
def temporary_cluster(user: str = "taxi", bin_dir: Path | None = None) -> Iterator[TempCluster]:
    """A throwaway cluster on a free loopback port (tests, benchmarks), removed afterwards.
    Its folder is made traversable: the server runs as the postgres user when we are root."""
    parent = Path(tempfile.mkdtemp(prefix="taxi-mlops-pg-"))
    parent.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cluster = Cluster(find_bin_dir(bin_dir), parent / "cluster", port, user, dict(os.environ))
    password = secrets.token_hex(16)
    try:
        cluster.init(password)
        cluster.start()
        yield TempCluster(cluster, password)
    finally:
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)


@dataclass(frozen=True)
class TempCluster:
    cluster: Cluster
    password: str

    def url(self, database: str = "postgres") -> str:
        return (
            f"postgresql+psycopg2://{self.cluster.user}:{self.password}@127.0.0.1:"
            f"{self.cluster.port}/{database}"
        )

    def create_database(self, name: str) -> str:
        """A new database owned by the cluster's user; its URL."""
        self.cluster.ensure_database(name, self.password)
        return self.url(name)
