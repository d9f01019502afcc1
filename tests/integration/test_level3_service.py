"""Level 3 end to end: real gunicorn (2 workers), a real MLflow registry, traffic during
deploy -> 10 % -> 50 % -> promote -> rollback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from scipy.stats import chisquare

from level2_training import registry, runtime, tracking
from level3_deployment.prediction_log import PredictionLog, journal_directory
from level3_deployment.routing import Mode, SplitPolicy, Variant, assign
from shared.data.generator import generate_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import split_xy
from shared.gunicorn_runner import worker_pids
from shared.models import build_model, get_family
from shared.services import free_port, http_json, start_service
from shared.settings import Settings
from tests.factories import ride
from tests.integration.traffic import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLI = str(Path(sys.executable).with_name("taxi-mlops"))
NAME = "taxi-trip-duration"
TOKEN = "integration-secret"


def register_two_versions(home: Path) -> None:
    settings = Settings()
    runtime.configure(settings)
    experiment = tracking.ensure_experiment("level3-test", runtime.artifact_location(settings))
    clean, _ = clean_trips(
        to_canonical(generate_month("2019-01", 5000, seed=1), "g"), ValidationBounds()
    )
    client = MlflowClient()
    registry.ensure_registered_model(client, NAME)
    for family in ("linear", "hgb"):
        X, y = split_xy(clean, get_family(family).spec)
        with mlflow.start_run(experiment_id=experiment):
            uri = tracking.log_pipeline(build_model(family).fit(X, y), X)
        mlflow.register_model(uri, NAME)
    registry.move_alias(client, NAME, registry.CHAMPION, 1, reason="test setup", actor="pytest")


def service_command(home: Path) -> tuple[list[str], str, dict[str, str]]:
    """Register two versions (v1 champion) and say how to start the service on them."""
    register_two_versions(home)
    port = free_port()
    env = {
        "TAXI_MLOPS_HOME": str(home),
        "TAXI_MLOPS_ADMIN_TOKEN": TOKEN,
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
    }
    command = [CLI, "level3", "serve", "--port", str(port), "--workers", "2"]
    return command, f"http://127.0.0.1:{port}", env


def test_blue_green_lifecycle_under_load(isolated_home: Path) -> None:
    command, url, env = service_command(isolated_home)

    def admin(*args: str) -> tuple[float, float]:
        """Run a control command; returns when it started and when it returned."""
        began = time.monotonic()
        subprocess.run(
            [CLI, "level3", *args, "--url", url],
            check=True,
            capture_output=True,
            env={**os.environ, **env},
        )
        return began, time.monotonic()

    with start_service(command, url, isolated_home / "level3.log", env=env, timeout_s=120):
        with Traffic(url) as traffic:
            # Each phase lasts until it has its quota of settled requests (bounded in time),
            # so the test sends >= 5,000 requests however fast the machine is.
            traffic.wait_for(600, since=time.monotonic())
            changes = [("deploy", admin("deploy", "--version", "2", "--share", "10"))]
            traffic.wait_for(1500, since=changes[-1][1][1])
            changes.append(("50%", admin("set-split", "--share", "50")))
            traffic.wait_for(1500, since=changes[-1][1][1])
            changes.append(("promote", admin("promote", "--reason", "test")))
            traffic.wait_for(700, since=changes[-1][1][1])
            changes.append(("rollback", admin("rollback")))
            traffic.wait_for(700, since=changes[-1][1][1])
        end = time.monotonic()
        log_count = PredictionLog(isolated_home / "level3" / "predictions.db").count()

    results = traffic.results
    assert len(results) >= 5000, len(results)
    failures = [r for r in results if r[3] != 200]
    assert not failures, failures[:5]
    assert log_count == len(results)  # every request logged exactly once

    # Phase i runs from when change i returned to when change i+1 began: a command returns once
    # every worker serves its change, so a request sent after that gets it, whichever worker
    # answers (no grace period).
    windows = list(
        zip(
            [0.0, *(done for _, (_, done) in changes)],
            [*(began for _, (began, _) in changes), end],
            strict=True,
        )
    )
    expected = [
        (SplitPolicy(Mode.OFF, 0), "1", "2"),
        (SplitPolicy(Mode.AB, 10), "1", "2"),
        (SplitPolicy(Mode.AB, 50), "1", "2"),
        (SplitPolicy(Mode.OFF, 0), "2", None),  # promoted: v2 is blue
        (SplitPolicy(Mode.OFF, 0), "1", "2"),  # rolled back: v1 is blue again
    ]
    green_keys: list[set[str]] = []
    seen_keys: list[set[str]] = []
    for (start, stop), (policy, blue, green) in zip(windows, expected, strict=True):
        settled = [r for r in results if r[0] >= start and r[1] < stop]
        assert len(settled) > 100
        for _, _, key, _, variant, version in settled:
            want = assign(policy, key).answer
            assert variant == str(want), (key, policy, variant)
            assert version == (green if want is Variant.GREEN else blue)
        greens = {r[2] for r in settled if r[4] == "green"}
        green_keys.append(greens)
        seen_keys.append({r[2] for r in settled})
        if policy.mode is Mode.AB:
            keys = {r[2] for r in settled}
            share = policy.green_percent / 100
            observed = [len(keys) - len(greens), len(greens)]
            assert chisquare(observed, [len(keys) * (1 - share), len(keys) * share]).pvalue > 0.001
    # Monotone: every key green at 10 % (and seen again at 50 %) is still green at 50 %.
    assert green_keys[1] & seen_keys[2]
    assert green_keys[1] & seen_keys[2] <= green_keys[2]

    client = MlflowClient()
    assert registry.alias_version(client, NAME, registry.CHAMPION) == 1
    moves = [(e.alias, e.action, e.to_version) for e in registry.history(client, NAME)]
    assert moves[-4:] == [
        ("challenger", "set", 2),
        ("challenger", "split", 2),
        ("champion", "set", 2),
        ("champion", "set", 1),
    ]


def test_a_worker_killed_mid_load_loses_nothing(isolated_home: Path) -> None:
    command, url, env = service_command(isolated_home)
    with start_service(command, url, isolated_home / "level3.log", env=env, timeout_s=120) as svc:
        with Traffic(url, retries=3) as traffic:
            time.sleep(3)
            victim = worker_pids(svc.pid)[0]
            os.kill(victim, signal.SIGKILL)
            time.sleep(5)
        log = PredictionLog(isolated_home / "level3" / "predictions.db")
        logged = log.count()
        distinct = {r[2] for r in traffic.results}
        assert len(worker_pids(svc.pid)) == 2  # gunicorn replaced the dead worker
    results = traffic.results
    assert len(results) >= 1000
    assert [r for r in results if r[3] != 200] == []
    assert logged == len(results)  # each answered request logged exactly once, retries included
    assert distinct


def test_a_worker_killed_mid_load_leaves_every_answer_in_the_journal(isolated_home: Path) -> None:
    """Requests without an X-Request-Id go to each worker's journal (the default on SQLite):
    every answered one is in the log once the dead worker's file is ingested."""
    command, url, env = service_command(isolated_home)
    with start_service(command, url, isolated_home / "level3.log", env=env, timeout_s=120) as svc:
        with Traffic(url, request_ids=False, prefix="journal") as traffic:
            time.sleep(3)
            os.kill(worker_pids(svc.pid)[0], signal.SIGKILL)
            time.sleep(3)
        log = PredictionLog(isolated_home / "level3" / "predictions.db")
        frame = log.frame()
        log.close()
        journal = journal_directory(isolated_home / "level3" / "predictions.db")
        live = sorted(journal.glob("*.jsonl"))
    answered = Counter(r[2] for r in traffic.results if r[3] == 200)
    failed = sum(1 for r in traffic.results if r[3] != 200)
    logged = Counter(frame["request_key"])
    assert sum(answered.values()) >= 1000
    assert answered - logged == Counter()  # nothing answered is missing from the log
    # and nothing is logged twice: at most the requests in flight when the worker died
    # (logged, their answers lost) are in the log without an answer
    assert sum((logged - answered).values()) <= failed
    assert frame["prediction_id"].is_unique
    assert len(live) <= 2  # the dead worker's file went once ingested; the live ones stay


def _every_worker_holds(url: str, victim: int, deadline_s: float) -> dict:
    """/health until gunicorn has replaced ``victim`` and every worker it runs says that it
    holds v1 ready for a rollback: the last answer."""
    held: dict[str, object] = {}
    deadline = time.monotonic() + deadline_s
    while True:
        health = http_json("GET", f"{url}/health")[1]
        held[health["worker"]] = health["standby"]
        siblings = health["siblings"]
        ready = {"version": 1, "loaded": True}
        replaced = not any(w.endswith(f":{victim}") for w in siblings) and len(siblings) == 2
        if replaced and all(held.get(w) == ready for w in siblings):
            return health
        assert time.monotonic() < deadline, (health, held)
        time.sleep(0.2)


def test_a_worker_started_after_a_promotion_holds_the_blue_a_rollback_restores(
    isolated_home: Path,
) -> None:
    command, url, env = service_command(isolated_home)

    def admin(*args: str) -> None:
        subprocess.run([CLI, "level3", *args, "--url", url], check=True, capture_output=True,
                       env={**os.environ, **env})  # fmt: skip

    with start_service(command, url, isolated_home / "level3.log", env=env, timeout_s=120) as svc:
        admin("deploy", "--version", "2", "--share", "50")
        admin("promote")
        victim = worker_pids(svc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        # its replacement loads blue (v2) to serve, then the blue a rollback restores (v1)
        health = _every_worker_holds(url, victim, deadline_s=90)
        assert health["server"] == f"{socket.gethostname()}:{svc.pid}"
        live = worker_pids(svc.pid)
        assert sorted(int(w.rsplit(":", 1)[1]) for w in health["siblings"]) == live
        admin("rollback")  # returns once both workers serve v1 again
        answers = {
            (a["variant"], a["model_version"])
            for a in (http_json("POST", f"{url}/predict", ride(ride_id=i))[1] for i in range(40))
        }
        assert answers == {("blue", "1")}


def unreachable_server(tmp_path: Path) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        # also the case where two workers would race to create an empty store's schema
        (lambda p: {"MLFLOW_TRACKING_URI": f"sqlite:///{p / 'empty.db'}"}, "no champion for"),
        # an MLflow server that does not answer is not an empty registry
        (unreachable_server, "cannot read the model registry: API request"),
    ],
    ids=["empty", "unreachable"],
)
def test_serve_refuses_to_start_without_a_champion(
    tmp_path: Path, registry: Callable[[Path], dict[str, str]], message: str
) -> None:
    completed = subprocess.run(
        [CLI, "level3", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "TAXI_MLOPS_HOME": str(tmp_path / "home"), **registry(tmp_path)},
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert message in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


def test_pinned_blue_and_green_services_for_a_load_balancer(isolated_home: Path) -> None:
    """infra/envs/aws runs one pinned service per variant and lets the ALB split the traffic."""
    command, url, env = service_command(isolated_home)
    missing = subprocess.run(
        [*command, "--pin-version", "7"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2 and "has no version 7" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr
    green_port = free_port()
    green_home = isolated_home / "green"
    green = [
        CLI,
        "level3",
        "serve",
        "--port",
        str(green_port),
        "--workers",
        "1",
        "--pin-version",
        "2",
        "--pin-variant",
        "green",
    ]
    green_url = f"http://127.0.0.1:{green_port}"
    ride = {
        "PULocationID": 161,
        "DOLocationID": 236,
        "trip_distance": 2.5,
        "pickup_datetime": "2019-02-11T08:30:00",
    }
    with (
        start_service(
            [*command, "--pin-version", "1"],
            url,
            isolated_home / "blue.log",
            env=env,
            timeout_s=120,
        ),
        start_service(
            green,
            green_url,
            isolated_home / "green.log",
            env={**env, "TAXI_MLOPS_HOME": str(green_home)},
            timeout_s=120,
        ),
    ):
        answers = {}
        for name, base in (("blue", url), ("green", green_url)):
            status, body = http_json("POST", f"{base}/predict", ride)
            assert status == 200, body
            answers[name] = (body["variant"], body["model_version"])
        status, body = http_json(
            "POST",
            f"{green_url}/admin/split",
            {"percent": 50},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert status == 409 and "pinned to v2 as green" in body["error"]
    assert answers == {"blue": ("blue", "1"), "green": ("green", "2")}
