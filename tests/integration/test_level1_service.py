"""Level-1 service under real gunicorn (2 workers) on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.data.generator import generate_month
from shared.gunicorn_runner import worker_pids
from shared.gunicorn_worker import DEFAULT_REQUESTS_PER_CONNECTION
from shared.services import ServiceProcess, free_port, http_json, start_service
from taxi_mlops.stack.processes import alive
from tests.factories import ride

pytestmark = pytest.mark.integration
CLI = [str(Path(sys.executable).with_name("taxi-mlops"))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    tmp = tmp_path_factory.mktemp("level1")
    files = []
    for i, month in enumerate(["2019-01", "2019-02"]):
        path = tmp / f"yellow_tripdata_{month}.parquet"
        generate_month(month, 5000, seed=i).to_parquet(path)
        files.append(str(path))
    env = {"TAXI_MLOPS_HOME": str(tmp / "home")}
    model = tmp / "model.joblib"
    subprocess.run(
        [*CLI, "level1", "train", "--train", files[0], "--val", files[1], "--out", str(model)],
        check=True,
        env={**os.environ, **env},
        capture_output=True,
    )
    return model, env, tmp


def _start(trained: tuple[Path, dict[str, str], Path]) -> ServiceProcess:
    model, env, tmp = trained
    port = free_port()
    return start_service(
        [*CLI, "level1", "serve", "--model", str(model), "--port", str(port), "--workers", "2"],
        f"http://127.0.0.1:{port}",
        tmp / f"serve-{port}.log",
        env=env,
    )


@pytest.fixture(scope="module")
def service(trained: tuple[Path, dict[str, str], Path]) -> Iterator[ServiceProcess]:
    svc = _start(trained)
    yield svc
    svc.stop()
    assert svc.process.returncode == 0, svc.log_path.read_text()[-2000:]


def _workers(master: int, expected: int = 2, timeout_s: float = 15.0) -> list[int]:
    """The master's children, waiting (bounded) until ``expected`` have forked: the service is
    healthy as soon as one worker answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = worker_pids(master) or []
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_runs_under_gunicorn_with_two_workers(service: ServiceProcess) -> None:
    assert len(_workers(service.pid)) == 2
    assert "gunicorn" in service.log_path.read_text().lower()


def test_predictions_single_and_batch(service: ServiceProcess) -> None:
    status, body = http_json("POST", f"{service.url}/predict", ride(ride_id="a1"))
    assert status == 200 and body["ride_id"] == "a1" and body["duration"] > 0
    status, body = http_json("POST", f"{service.url}/predict", [ride(), ride(trip_distance=10)])
    assert status == 200 and len(body["predictions"]) == 2


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"hello", 400, "body"),
        (json.dumps({"DOLocationID": 5, "trip_distance": 1}).encode(), 400, "PULocationID"),
        (json.dumps(ride(trip_distance="2 miles")).encode(), 400, "trip_distance"),
        (json.dumps(ride(trip_distance=-1)).encode(), 400, "trip_distance"),
        (json.dumps(ride(PULocationID=0)).encode(), 400, "PULocationID"),
        (json.dumps(ride(DOLocationID=999)).encode(), 400, "DOLocationID"),
        (b"[]", 400, "body"),
    ],
)
def test_malformed_requests(service: ServiceProcess, raw: bytes, status: int, field: str) -> None:
    got, body = http_json("POST", f"{service.url}/predict", raw=raw)
    assert got == status
    assert body["errors"][0]["field"] == field


def test_ten_megabyte_body_is_refused_cleanly(service: ServiceProcess) -> None:
    """Raw socket: the server may answer 413 before reading the whole body."""
    port = int(service.url.rsplit(":", 1)[1])
    size = 10 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        # The server may answer early and close while we are still sending: fine.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"[" + b" " * (size - 2) + b"]")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert http_json("GET", f"{service.url}/health")[0] == 200


def test_metrics_add_up_across_workers(service: ServiceProcess) -> None:
    def before() -> float:
        _, text = http_json("GET", f"{service.url}/metrics")
        found = re.search(
            r'taxi_level1_requests_total\{endpoint="/predict",status="200"\} (\S+)', text
        )
        return float(found.group(1)) if found else 0.0

    # what earlier tests' requests counted, once it is all written: a worker writes its counts
    # every FLUSH_S, later on a loaded machine, and one still held would count here
    start = _settled(before)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda i: http_json("POST", f"{service.url}/predict", ride(ride_id=i))[0],
                range(400),
            )
        )
    assert statuses == [200] * 400
    # counters from both workers are summed; a worker writes its counts every FLUSH_S
    deadline = time.monotonic() + 5
    while (counted := before() - start) < 400 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted == 400


def _settled(read: Callable[[], float], quiet_s: float = 0.5, timeout_s: float = 10.0) -> float:
    """``read()`` once it has stayed the same for ``quiet_s``."""
    value, since = read(), time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := read()) != value:
            value, since = now, time.monotonic()
    return value


def test_keep_alive_connections_close_after_their_share(service: ServiceProcess) -> None:
    """A connection is answered ``Connection: close`` on its last request, so that clients
    reconnect and spread over the workers again (shared/gunicorn_worker.py)."""
    host, port = service.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    local_ports, connection_headers = [], []
    for _ in range(DEFAULT_REQUESTS_PER_CONNECTION + 1):
        conn.request("GET", "/health")
        local_ports.append(conn.sock.getsockname()[1])
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        connection_headers.append(response.getheader("Connection"))
    conn.close()
    last = DEFAULT_REQUESTS_PER_CONNECTION - 1
    assert connection_headers[:last] == ["keep-alive"] * last
    assert connection_headers[last] == "close"
    assert len(set(local_ports[: last + 1])) == 1  # one connection, then a new one
    assert local_ports[-1] != local_ports[0]


def test_stop_by_pid_leaves_nothing(trained: tuple[Path, dict[str, str], Path]) -> None:
    svc = _start(trained)
    port = svc.url.rsplit(":", 1)[1]
    pidfile = Path(trained[1]["TAXI_MLOPS_HOME"]) / "run" / f"level1-{port}.pid"
    assert int(pidfile.read_text()) == svc.pid
    workers = _workers(svc.pid)
    assert len(workers) == 2
    os.kill(svc.pid, signal.SIGTERM)
    assert svc.process.wait(timeout=20) == 0
    for pid in [svc.pid, *workers]:
        # a zombie is gone (only its exit status is left for a parent that died first: this
        # container's PID 1 does not reap orphans)
        assert not alive(pid), f"process {pid} survived"
    assert not pidfile.exists()
