"""Hostile and careless clients against the real services (gunicorn, 2 workers each): every
case of the fuzz and probe pass gets a 4xx naming the field, or the documented behaviour, and
stores or changes nothing. Level 1 and level 3 share their parsing (``shared/serving.py``,
``shared/web.py``), so the input cases run against both."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from level3_deployment.prediction_log import PredictionLog
from shared.data.generator import generate_month
from shared.services import ServiceProcess, free_port, http_json, start_service
from tests.factories import ride
from tests.integration.test_level3_service import register_two_versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))
ADMIN_TOKEN = "admin-" + "a" * 40
FEED_TOKEN = "labels-" + "b" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FEED = {"Authorization": f"Bearer {FEED_TOKEN}"}


@pytest.fixture(scope="module")
def level3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    home = tmp_path_factory.mktemp("hostile-level3") / "home"
    env = {
        "TAXI_MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "TAXI_MLOPS_ENV": "prod",
        "TAXI_MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "TAXI_MLOPS_FEEDBACK_TOKEN": FEED_TOKEN,
    }
    (home / "mlflow").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        register_two_versions(home)
    port = free_port()
    command = [CLI, "level3", "serve", "--port", str(port), "--workers", "2"]
    url = f"http://127.0.0.1:{port}"
    with start_service(command, url, home / "level3.log", env=env, timeout_s=120) as service:
        yield service
    assert service.process.returncode == 0


@pytest.fixture(scope="module")
def level1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("hostile-level1")
    files = []
    for i, month in enumerate(["2019-01", "2019-02"]):
        files.append(tmp / f"yellow_tripdata_{month}.parquet")
        generate_month(month, 3000, seed=i).to_parquet(files[-1])
    env = {"TAXI_MLOPS_HOME": str(tmp / "home")}
    model = tmp / "model.joblib"
    subprocess.run(
        [CLI, "level1", "train", "--train", str(files[0]), "--val", str(files[1]), "--out", model],
        check=True,
        env={**os.environ, **env},
        capture_output=True,
    )
    port = free_port()
    command = [CLI, "level1", "serve", "--model", str(model), "--port", str(port)]
    with start_service(command, f"http://127.0.0.1:{port}", tmp / "serve.log", env=env) as svc:
        yield svc
    assert svc.process.returncode == 0


@pytest.fixture(params=["level1", "level3"])
def either(request: pytest.FixtureRequest) -> ServiceProcess:
    return request.getfixturevalue(request.param)


def log_path(service: ServiceProcess) -> Path:
    return Path(service.log_path).parent / "level3" / "predictions.db"


def rows(service: ServiceProcess, query: str, *params: object) -> list[tuple]:
    """A query of the service's log, once its workers' journals are in the table (as every
    reader of the log sees it)."""
    log = PredictionLog(log_path(service))
    log.sync()
    log.close()
    with sqlite3.connect(log_path(service)) as conn:
        return conn.execute(query, params).fetchall()


def post(service: ServiceProcess, path: str, body: object, **kwargs: object) -> tuple[int, dict]:
    return http_json("POST", f"{service.url}{path}", body, timeout=30, **kwargs)  # type: ignore[arg-type]


def raw_post(service: ServiceProcess, path: str, data: bytes, **headers: str) -> tuple[int, dict]:
    return http_json("POST", f"{service.url}{path}", raw=data, timeout=30, headers=headers or None)


# ------------------------------------------------------------------ input: no more 500s

HUGE = "1" + "0" * 400
CASES = [
    ("[" * 1000 + "]" * 1000, "body"),
    ('{"PULocationID": HUGE, "DOLocationID": 2, "trip_distance": 3}', "PULocationID"),
    ('{"PULocationID": 1, "DOLocationID": 2, "trip_distance": HUGE}', "trip_distance"),
    ('{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 3, "ride_id": "\\ud800"}', "ride_id"),
    ('{"PULocationID": 1, "DOLocationID": 2, "trip_distance": 3, "ride_id": HUGE}', "ride_id"),
    ('{"PULocationID": 1, "DOLocationID": 2, "trip_distance": NaN}', "body"),
]


@pytest.mark.parametrize(("body", "field"), CASES, ids=range(len(CASES)))
def test_input_that_used_to_crash_is_a_400_naming_the_field(
    either: ServiceProcess, body: str, field: str
) -> None:
    status, answer = raw_post(either, "/predict", body.replace("HUGE", HUGE).encode())
    assert status == 400, answer
    assert answer["errors"][0]["field"] == field, answer
    assert "Traceback" not in either.log_path.read_text()


@pytest.mark.parametrize(
    "pickup", ["NaT", "", "today", "0001-01-01T00:00:00", "100000-01-01T00:00:00", "2019-02-30"]
)
def test_dates_that_mean_nothing_are_refused(either: ServiceProcess, pickup: str) -> None:
    status, answer = post(either, "/predict", ride(ride_id="dated", pickup_datetime=pickup))
    assert status == 400, answer
    assert answer["errors"][0]["field"] == "pickup_datetime", answer


def test_refused_dates_leave_no_meaningless_event_time(level3: ServiceProcess) -> None:
    post(level3, "/predict", ride(ride_id="nat-ride", pickup_datetime="NaT"))
    assert rows(level3, "SELECT COUNT(*) FROM predictions WHERE request_key = 'nat-ride'") == [(0,)]
    assert rows(level3, "SELECT COUNT(*) FROM predictions WHERE event_time = 'NaT'") == [(0,)]
    stored = rows(level3, "SELECT event_time FROM rejections WHERE request_key = 'nat-ride'")
    assert stored and all(t is None for (t,) in stored)


def test_a_chunked_body_over_the_limit_is_a_413(either: ServiceProcess) -> None:
    port = int(either.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65536
        try:
            for _ in range(32):  # 2 MiB
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the end: fine
        reply = sock.recv(200)
    assert reply.startswith(b"HTTP/1.1 413"), reply


def test_errors_carry_their_headers(either: ServiceProcess) -> None:
    request = b"GET /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    port = int(either.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 405") and re.search(r"(?im)^Allow: .*POST", head), head


# ------------------------------------------------------------------------ slow clients


def stall_and_probe(url: str) -> bytes:
    """Four clients send headers and one byte of a 100-byte body; ten /health probes must each
    answer within a second meanwhile. Returns what the first stalled client finally got."""
    port = int(url.rsplit(":", 1)[1])
    stalled = []
    try:
        for _ in range(4):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            stalled.append(sock)
        time.sleep(0.5)  # each has a thread reading its body by now
        for _ in range(10):
            began = time.monotonic()
            status, _ = http_json("GET", f"{url}/health", timeout=5)
            assert status == 200
            assert time.monotonic() - began < 1.0
        stalled[0].settimeout(20)
        return stalled[0].recv(100)
    finally:
        for sock in stalled:
            sock.close()


def test_four_stalled_clients_leave_health_answering(either: ServiceProcess) -> None:
    # the stalled requests end, with a 408, once their deadline passes (10 s)
    assert stall_and_probe(either.url).startswith(b"HTTP/1.1 408")


def test_behind_nginx_stalled_clients_never_reach_a_worker(
    level1: ServiceProcess, tmp_path: Path
) -> None:
    """Even gunicorn's sync workers (``--threads 1``), which four stalled clients block when
    they are reached directly, keep answering behind nginx: it buffers whole requests."""
    from taxi_mlops.stack import nginx

    if nginx.find_binary() is None:
        pytest.skip("nginx is not installed (.ci/run installs it): apt-get install nginx")
    model = next(Path(level1.log_path).parent.glob("*.joblib"))
    port = free_port()
    command = [CLI, "level1", "serve", "--model", str(model), "--port", str(port)]
    command += ["--threads", "1"]
    url = f"http://127.0.0.1:{port}"
    env = {"TAXI_MLOPS_HOME": str(tmp_path / "home")}
    with (
        start_service(command, url, tmp_path / "sync.log", env=env) as sync,
        nginx.start_proxy(tmp_path, [port]) as proxy,
    ):
        # nginx drops a client silent for 10 s (client_body_timeout), with or without a 408
        reply = stall_and_probe(proxy.url)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
        assert http_json("GET", f"{sync.url}/health")[0] == 200


# ----------------------------------------------------------------------------- metrics


def test_metrics_under_gunicorn_have_real_series(level3: ServiceProcess) -> None:
    for i in range(6):
        assert post(level3, "/predict", ride(ride_id=f"m{i}"))[0] == 200
    pattern = r'taxi_level3_requests_total\{endpoint="/predict",status="200",variant="blue"\} (\S+)'
    deadline = time.monotonic() + 5  # each worker writes its counts every FLUSH_S
    while True:
        _, text = http_json("GET", f"{level3.url}/metrics")
        found = re.search(pattern, text)
        if (found and float(found.group(1)) >= 6) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert found and float(found.group(1)) >= 6, text[:500]


# --------------------------------------------------------------------------- feedback


def test_labels_need_the_feedback_token(level3: ServiceProcess) -> None:
    post(level3, "/predict", ride(ride_id="tok"))
    for headers in ({}, ADMIN, {"Authorization": "Bearer wrong"}):
        url = f"{level3.url}/feedback"
        request = json.dumps({"ride_id": "tok", "duration": 5}).encode()
        status, answer = http_json("POST", url, raw=request, headers=headers)
        assert status == 401, (headers, answer)
    port = int(level3.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /admin/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 401") and "WWW-Authenticate: Bearer" in head
    assert rows(level3, "SELECT COUNT(*) FROM feedback WHERE request_key = 'tok'") == [(0,)]


def test_a_huge_ride_id_is_refused_and_stores_nothing(level3: ServiceProcess) -> None:
    home = Path(level3.log_path).parent / "level3"
    size = sum(p.stat().st_size for p in home.glob("predictions.db*"))
    for _ in range(30):
        status, answer = post(
            level3, "/feedback", {"ride_id": "x" * 1_000_000, "duration": 5}, headers=FEED
        )
        assert status == 400 and answer["errors"][0]["field"] == "ride_id", answer
    grown = sum(p.stat().st_size for p in home.glob("predictions.db*")) - size
    assert grown < 1_000_000, grown
    for table in ("rejections", "feedback", "predictions"):
        query = f"SELECT MAX(LENGTH(request_key)) FROM {table}"  # noqa: S608 - fixed names
        longest = rows(level3, query)[0][0] or 0
        assert longest <= 128, table


def test_first_label_wins(level3: ServiceProcess) -> None:
    assert post(level3, "/predict", ride(ride_id="first"))[0] == 200
    assert post(level3, "/feedback", {"ride_id": "first", "duration": 59}, headers=FEED)[0] == 200
    status, answer = post(level3, "/feedback", {"ride_id": "first", "duration": 10}, headers=FEED)
    assert status == 409 and "already labelled 59" in answer["error"], answer
    status, answer = post(level3, "/feedback", {"ride_id": "first", "duration": 59}, headers=FEED)
    assert status == 200 and answer["duplicate"] is True
    assert rows(level3, "SELECT actual FROM predictions WHERE request_key = 'first'") == [(59.0,)]


def test_a_refused_label_never_attaches_to_a_later_prediction(level3: ServiceProcess) -> None:
    status, _ = post(level3, "/feedback", {"ride_id": "later", "duration": 7}, headers=FEED)
    assert status == 404
    assert post(level3, "/predict", ride(ride_id="later"))[0] == 200
    assert rows(level3, "SELECT actual FROM predictions WHERE request_key = 'later'") == [(None,)]
    assert rows(level3, "SELECT COUNT(*) FROM feedback WHERE request_key = 'later'") == [(0,)]


# ------------------------------------------------------------------------- idempotency


def test_a_reused_request_id_with_another_body_is_refused(level3: ServiceProcess) -> None:
    headers = {"X-Request-Id": "idem-1", "Content-Type": "application/json"}
    first = json.dumps(ride(ride_id="idem-a")).encode()
    other = json.dumps(ride(ride_id="idem-b", trip_distance=9.5)).encode()
    assert raw_post(level3, "/predict", first, **headers)[0] == 200
    assert raw_post(level3, "/predict", first, **headers)[0] == 200  # a retry: logged once
    status, answer = raw_post(level3, "/predict", other, **headers)
    assert status == 422 and answer["errors"][0]["field"] == "X-Request-Id", answer
    logged = rows(level3, "SELECT request_key FROM predictions WHERE prediction_id LIKE 'idem-1:%'")
    assert logged == [("idem-a",)]


# ------------------------------------------------------------------------- admin changes


def test_an_admin_change_is_validated_whole_before_anything_moves(level3: ServiceProcess) -> None:
    status, answer = post(level3, "/admin/deploy", {"version": 2, "percent": 10}, headers=ADMIN)
    assert status == 200, answer
    before = http_json("GET", f"{level3.url}/admin/state", headers=ADMIN)[1]["state"]
    for reason in ["r" * 100_000, {"a": 1}, 12345, ["x"]]:
        status, answer = post(
            level3, "/admin/split", {"percent": 30, "reason": reason}, headers=ADMIN
        )
        assert status == 400 and answer["errors"][0]["field"] == "reason", answer
    after = http_json("GET", f"{level3.url}/admin/state", headers=ADMIN)[1]["state"]
    assert after == before
    status, answer = post(level3, "/admin/deploy", {"version": 99}, headers=ADMIN)
    assert status == 404 and answer["errors"][0]["field"] == "version", answer
    assert post(level3, "/admin/rollback", {"reason": "clean up"}, headers=ADMIN)[0] == 200


# ------------------------------------------------------------------------------ leaks


def test_level1_health_does_not_map_the_disk(level1: ServiceProcess) -> None:
    _, health = http_json("GET", f"{level1.url}/health")
    assert not any(isinstance(v, str) and "/" in v for v in health.values()), health


def test_an_unparseable_pickup_is_one_line_in_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "tpep_pickup_datetime,tpep_dropoff_datetime,PULocationID,DOLocationID,trip_distance\n"
        "yesterday,tomorrow,1,2,3\nnope,nah,1,2,3\n"
    )
    done = subprocess.run(
        [CLI, "data", "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    output = (done.stdout + done.stderr).strip()
    assert "Warning" not in output and len(output.splitlines()) == 1, output


@pytest.mark.parametrize("token", ["x", " " + "a" * 40])
def test_prod_refuses_to_serve_with_a_weak_token(tmp_path: Path, token: str) -> None:
    env = {**os.environ, "TAXI_MLOPS_HOME": str(tmp_path), "TAXI_MLOPS_ENV": "prod"}
    env |= {"TAXI_MLOPS_ADMIN_TOKEN": token, "TAXI_MLOPS_FEEDBACK_TOKEN": FEED_TOKEN}
    done = subprocess.run(
        [CLI, "level3", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "TAXI_MLOPS_ADMIN_TOKEN" in done.stderr and "Traceback" not in done.stderr


# -------------------------------------------- schemathesis: last, it changes deployments

SCHEMATHESIS = Path(sys.executable).parents[1] / "schemathesis" / "bin" / "st"
RUNS = {
    "level1": ("level1", []),
    "level3-anonymous": ("level3", []),
    "level3-labels": ("level3", ["-H", f"Authorization: Bearer {FEED_TOKEN}"]),
    "level3-admin": ("level3", ["-H", f"Authorization: Bearer {ADMIN_TOKEN}"]),
}


@pytest.mark.parametrize("run", list(RUNS))
def test_schemathesis_finds_nothing(
    request: pytest.FixtureRequest, run: str, tmp_path: Path
) -> None:
    """Every check schemathesis has, on examples generated from the published OpenAPI
    document (a fixed seed, so a failure reproduces); with and without each token."""
    if not SCHEMATHESIS.exists():
        pytest.skip(f"{SCHEMATHESIS} is missing: `make install` creates its virtualenv")
    service: ServiceProcess = request.getfixturevalue(RUNS[run][0])
    command = [str(SCHEMATHESIS), "run", f"{service.url}/openapi.json", "--checks", "all"]
    command += ["--max-examples", "100", "--seed", "20261201", "--workers", "1", "--no-color"]
    done = subprocess.run(  # in tmp_path: hypothesis keeps its example database in the cwd
        [*command, *RUNS[run][1]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", done.stdout), done.stdout[-2000:]
