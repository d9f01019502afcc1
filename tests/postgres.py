"""A private PostgreSQL server for tests: one cluster per test process (initdb + pg_ctl on
127.0.0.1 and a free port, ~2 s), a fresh database per test. Skips, naming what is missing,
where PostgreSQL's server programs are not installed (`.ci/run` installs them)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from taxi_mlops.stack.postgres import Cluster, find_bin_dir

USER = "taxi"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    cluster: Cluster
    password: str

    def url(self, database: str = "postgres") -> str:
        return (
            f"postgresql+psycopg2://{USER}:{self.password}@127.0.0.1:{self.cluster.port}/{database}"
        )

    def _admin(self):
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user=USER,
            password=self.password,
            dbname="postgres",
        )
        conn.autocommit = True
        return conn

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database; dropped afterwards (its connections closed first)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = self._admin()
        try:
            conn.cursor().execute(f"CREATE DATABASE {name}")
            yield self.url(name)
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()

    def restart(self) -> None:
        self.cluster.stop()
        self.cluster.start()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    try:
        bin_dir = find_bin_dir(None)
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not installed ({exc}); `.ci/run` installs it")
    # the server runs as the postgres user when we are root: its folder's parents must be
    # traversable, which pytest's 0700 temp folders are not
    parent = Path(tempfile.mkdtemp(prefix="taxi-mlops-pg-"))
    parent.chmod(0o755)
    cluster = Cluster(bin_dir, parent / "cluster", free_port(), USER, dict(os.environ))
    password = secrets.token_hex(16)
    cluster.init(password)
    cluster.start()
    try:
        yield PostgresServer(cluster, password)
    finally:
        cluster.stop()
        shutil.rmtree(parent, ignore_errors=True)
