"""A private PostgreSQL server for tests: one cluster per test process (initdb + pg_ctl on
127.0.0.1 and a free port, ~2 s), a fresh database per test. Skips, naming what is missing,
where PostgreSQL's server programs are not installed (`.ci/run` installs them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from taxi_mlops.stack.postgres import TempCluster, find_bin_dir, temporary_cluster


@dataclass(frozen=True)
class PostgresServer:
    temp: TempCluster

    def url(self, database: str = "postgres") -> str:
        return self.temp.url(database)

    def _admin(self):
        import psycopg2

        cluster = self.temp.cluster
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=cluster.port,
            user=cluster.user,
            password=self.temp.password,
            dbname="postgres",
        )
        conn.autocommit = True
        return conn

    @contextmanager
    def database(self) -> Iterator[str]:
        """A new, empty database; dropped afterwards (its connections closed first)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._sql(f"CREATE DATABASE {name}")
        yield self.url(name)
        # a new connection: the test may have restarted the server meanwhile
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def _sql(self, statement: str) -> None:
        conn = self._admin()
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    try:
        find_bin_dir(None)
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not installed ({exc}); `.ci/run` installs it")
    with temporary_cluster() as temp:
        yield PostgresServer(temp)
