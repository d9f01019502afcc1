"""Faults of the shared state database, against a real level-3 service (gunicorn, 2 workers)
logging to a real PostgreSQL server.

The rule chosen: a request is never answered without being logged. While the database is
unreachable, `/predict` answers 503 (with Retry-After) at once, rather than buffering answers
it could lose; a client (or nginx) retries with the same X-Request-Id, and the retry that
succeeds is logged exactly once. A worker that gunicorn starts during the outage boots all the
same (a worker that fails to boot would make gunicorn stop the whole service) and serves once
the database is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.gunicorn_runner import worker_pids
from shared.services import start_service
from tests.integration.test_level3_service import service_command
from tests.integration.traffic import Traffic


def wait_until(found: Callable[[], set[int]], timeout_s: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, "gunicorn started no worker in place of the killed one"
        time.sleep(0.05)
    return value


pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_postgres_restart_under_load_answers_503_fast_and_loses_nothing(
    isolated_home: Path, postgres
) -> None:
    with postgres.database() as url:
        command, service_url, env = service_command(isolated_home)
        env["TAXI_MLOPS_STATE_DB_URL"] = url
        log_path = isolated_home / "serve.log"
        with start_service(command, service_url, log_path, env=env, timeout_s=120) as svc:
            traffic = Traffic(service_url, threads=4, prefix="pgr", retries=400,
                              retry_statuses=(503,))  # fmt: skip
            with traffic:
                traffic.wait_for(200, since=0)
                cluster = postgres.temp.cluster
                cluster.stop()
                down_at = time.monotonic()
                replaced = worker_pids(svc.pid)[0]
                os.kill(replaced, signal.SIGKILL)  # gunicorn boots another while it is down
                booting = wait_until(lambda: set(worker_pids(svc.pid) or []) - {replaced})
                time.sleep(1.5)  # the service keeps answering: 503s, fast
                cluster.start()
                traffic.wait_for(300, since=down_at + 1.5)
                assert svc.process.poll() is None, "the service stopped"
                assert booting <= set(worker_pids(svc.pid) or [])  # it booted, and serves
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                logged, distinct = conn.execute(
                    sa.text(
                        "SELECT COUNT(*), COUNT(DISTINCT prediction_id) FROM predictions "
                        "WHERE request_key LIKE 'pgr-%'"
                    )
                ).one()
            engine.dispose()
    results = traffic.results
    assert [r for r in results if r[3] != 200] == []  # every request answered in the end
    unavailable = [seconds for status, seconds in traffic.attempts if status == 503]
    assert unavailable, "the outage was never seen"
    assert max(unavailable) < 5.0, max(unavailable)  # refused at once, not after a hang
    assert {status for status, _ in traffic.attempts} <= {200, 503}
    # each answered request logged exactly once: the retries that got 503 left nothing
    assert logged == distinct == len(results)
    assert "Traceback" not in log_path.read_text()
