"""Scale-out mode end to end: `taxi-mlops stack up` on this machine (PostgreSQL, an S3 store,
MLflow and Prefect servers on PostgreSQL, a process worker, two level-3 replicas behind nginx),
the level 2 -> 3 -> 4 loop through settings alone, and the failure drills: a replica killed
under load, the MLflow server restarted while a flow run is in progress. Then `stack down`
leaves no process behind.

The tests run in order on one stack (one module, one xdist worker). `.ci/run` installs
PostgreSQL and nginx where missing; elsewhere the module skips and names what is absent.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy

from level3_deployment.client import wait_until_served
from level4_automation.replay_inject import (
    Injection,
    ReplayConfig,
    durations,
    inject,
    load_trips,
    ride_payloads,
)
from level4_automation.replay_traffic import send_feedback, stream
from shared.services import http_json
from shared.settings import DEV_FEEDBACK_TOKEN
from taxi_mlops.stack import nginx
from taxi_mlops.stack.postgres import find_bin_dir
from taxi_mlops.stack.processes import alive, marked_processes, read_pid
from tests.integration.traffic import Traffic
from tests.workflows import clean_copy, failure, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: a production-grade admin token: the deploy and monitor workflows run with TAXI_MLOPS_ENV=prod
ADMIN_TOKEN = secrets.token_hex(32)
CLI = str(Path(sys.executable).with_name("taxi-mlops"))
#: every offset of the stack's port layout (taxi_mlops/stack/plan.py)
OFFSETS = (0, 1, 2, 10, 20, 30, 40)


def missing_programs() -> list[str]:
    missing = []
    try:
        find_bin_dir(None)
    except Exception:
        missing.append("PostgreSQL server (apt-get install postgresql)")
    if not nginx.find_binary():
        missing.append("nginx (apt-get install nginx)")
    return missing


def free_base() -> int:
    """A port base below the ephemeral range whose every stack port is free."""
    for base in range(23000, 30000, 100):
        ports = [base + o for o in OFFSETS]
        try:
            sockets = []
            for port in ports:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError("no free block of stack ports")


@dataclass(frozen=True)
class Stack:
    home: Path
    env: dict[str, str]
    up: dict

    def cli(self, *args: str, ok: bool = True, timeout: float = 900) -> dict:
        completed = subprocess.run(
            [CLI, *args, "--json"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        assert (completed.returncode == 0) is ok, (
            completed.stdout[-3000:] + completed.stderr[-3000:]
        )
        assert "Traceback" not in completed.stderr, completed.stderr[-3000:]
        return json.loads(completed.stdout)

    def url(self, name: str) -> str:
        return self.up["urls"][name]

    def log(self, name: str) -> Path:
        return self.home / "stack" / "logs" / f"{name}.log"

    def pid(self, name: str) -> int | None:
        return read_pid(self.home / "stack" / "run" / f"{name}.pid")

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{int(self.env['TAXI_MLOPS_STACK_PORT_BASE']) + 1 + index}"

    def state_query(self, sql: str) -> tuple:
        """One row from the stack's shared state database (PostgreSQL)."""
        engine = sqlalchemy.create_engine(self.env["TAXI_MLOPS_STATE_DB_URL"])
        try:
            with engine.connect() as conn:
                return tuple(conn.execute(sqlalchemy.text(sql)).one())
        finally:
            engine.dispose()

    def elsewhere(self, home: Path, *args: str) -> dict:
        """A taxi-mlops command from a home of its own that knows only the stack's URLs."""
        env = {k: v for k, v in self.env.items() if k != "TAXI_MLOPS_HOME"}
        completed = subprocess.run(
            [CLI, *args, "--json"],
            capture_output=True,
            text=True,
            env={**env, "TAXI_MLOPS_HOME": str(home)},
            timeout=300,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
        return json.loads(completed.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if missing := missing_programs():
        pytest.skip(f"scale-out mode needs {' and '.join(missing)} (.ci/run installs them)")
    home = tmp_path_factory.mktemp("stack") / "home"
    if os.geteuid() == 0:
        # PostgreSQL runs as the postgres user: it must be able to reach the home (pytest's
        # temp folders are 0700)
        for parent in [home.parent, *home.parent.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o001)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAXI_MLOPS_", "MLFLOW_", "PREFECT_"))
    }
    env.update(
        {
            "TAXI_MLOPS_HOME": str(home),
            "TAXI_MLOPS_STACK_PORT_BASE": str(free_base()),
            "TAXI_MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    bare = Stack(home, env, {})
    up = bare.cli("stack", "up", "--seed-rows", "4000", timeout=1500)
    running = Stack(home, {**env, **up["env"]}, up)
    try:
        yield running
    finally:
        subprocess.run(
            [CLI, "stack", "down"], env=env, capture_output=True, timeout=300, check=False
        )


def ride(key: str) -> dict:
    return {"ride_id": key, "PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.5}


def test_up_brings_every_component_up_healthy_and_is_idempotent(stack: Stack) -> None:
    actions = stack.up["actions"]
    assert actions["champion"].startswith("v1 trained through the worker"), actions
    status = stack.cli("stack", "status")
    names = [c["name"] for c in status["components"]]
    assert names == [
        "postgres", "s3", "mlflow", "prefect", "worker", "level3-1", "level3-2", "nginx",
    ]  # fmt: skip
    assert status["ok"], status
    again = stack.cli("stack", "up")
    assert {a for n, a in again["actions"].items() if n not in ("champion", "deployment")} == {
        "already running"
    }
    status, answer = http_json("POST", f"{stack.url('level3')}/predict", ride("first"))
    assert status == 200 and answer["model_version"] == "1", answer


def test_a_training_flow_runs_on_the_worker_and_is_deployed_to_green(stack: Stack) -> None:
    result = stack.cli(
        "level2", "train", "--generated", "--train-months", "2019-02", "--val-month", "2019-03",
        "--rows", "8000", "--models", "ridge", "--trials", "1", "--on-worker",
    )  # fmt: skip
    assert result["registered"]["version"] == 2
    assert result["tracking_uri"] == stack.url("mlflow")  # the stack's server, not a file
    # the Prefect server ran it as a deployment on the process pool
    status, run = http_json(
        "GET", f"{stack.env['PREFECT_API_URL']}/flow_runs/{result['flow_run']['id']}"
    )
    assert status == 200 and run["state_type"] == "COMPLETED"
    assert run["work_pool_name"] == "taxi-training" and run["deployment_id"]
    # its artifacts went through the MLflow server to S3
    assert result["best"]["model_uri"].startswith("models:/")

    deployed = stack.cli("level3", "deploy", "--version", "2", "--share", "50")
    assert deployed["state"]["green"] == 2
    seen = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(seen) < 2:
        for i in range(40):
            status, answer = http_json("POST", f"{stack.url('level3')}/predict", ride(f"g-{i}"))
            assert status == 200, answer
            seen.add((answer["variant"], answer["model_version"]))
    assert seen == {("blue", "1"), ("green", "2")}


def test_a_killed_replica_and_an_mlflow_restart_lose_no_request(stack: Stack) -> None:
    worker_log = stack.log("worker")
    mark = worker_log.stat().st_size
    flow = subprocess.Popen(
        [CLI, "level2", "train", "--generated", "--train-months", "2019-03", "--val-month",
         "2019-04", "--rows", "10000", "--models", "ridge,hgb", "--trials", "3", "--on-worker",
         "--json"],
        env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with Traffic(stack.url("level3"), threads=4, prefix="drill") as traffic:
        traffic.wait_for(200, since=0)
        victim = stack.pid("level3-1")
        assert victim is not None and alive(victim)
        os.killpg(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        traffic.wait_for(300, since=killed_at)

        # restart MLflow once the flow run is logging its trials
        deadline = time.monotonic() + 300
        while "Task run 'train" not in worker_log.read_text()[mark:]:
            assert flow.poll() is None, flow.communicate()
            assert time.monotonic() < deadline, "the flow run never started training"
            time.sleep(0.3)
        restarted = stack.cli("stack", "restart", "mlflow")
        assert restarted["stopped"] == "stopped" and restarted["action"] == "started"
        restarted_at = time.monotonic()
        traffic.wait_for(300, since=restarted_at)  # serving goes on with the models it holds
        out, err = flow.communicate(timeout=900)
    assert flow.returncode == 0, out[-2000:] + err[-3000:]
    assert json.loads(out)["registered"]["version"] == 3
    # the outage hit the run in progress: the MLflow client retried, and the run succeeded
    assert "Retrying" in worker_log.read_text()[mark:]

    results = traffic.results
    failed = [r for r in results if r[3] != 200]
    assert len(results) >= 1000 and failed == [], failed[:5]
    assert {(r[4], r[5]) for r in results} <= {("blue", "1"), ("green", "2")}
    # nginx sent the requests the dead replica dropped to the other one...
    access = stack.log("nginx-access").read_text()
    assert "upstream_status=502, 200" in access or "upstream_status=504, 200" in access
    # ...and with the same X-Request-Id, so each answered request is logged exactly once
    logged, distinct = stack.state_query(
        "SELECT COUNT(*), COUNT(DISTINCT prediction_id) FROM predictions "
        "WHERE request_key LIKE 'drill-%'"
    )
    assert logged == distinct == len(results)

    status = stack.cli("stack", "status", ok=False)
    down = [c["name"] for c in status["components"] if not c["healthy"]]
    assert down == ["level3-1"], status
    back = stack.cli("stack", "up")
    assert back["actions"]["level3-1"] == "started"
    assert stack.cli("stack", "status")["ok"]


def served(stack: Stack, keys: int = 100) -> set[tuple[str, str]]:
    """(variant, version) pairs nginx's answers show for a fixed set of ride ids (sticky)."""
    answers = set()
    for i in range(keys):
        status, answer = http_json("POST", f"{stack.url('level3')}/predict", ride(f"s-{i}"))
        assert status == 200, answer
        answers.add((answer["variant"], answer["model_version"]))
    return answers


def test_the_level4_loop_retrains_and_deploys_a_canary_by_settings_alone(stack: Stack) -> None:
    # The earlier test's green (v2 at 50 %) would be judged as a canary already in place: take
    # it out of traffic, so the loop judges the champion.
    split = stack.cli("level3", "set-split", "--share", "0")["state"]
    assert split["green_percent"] == 0
    # every worker of both replicas (2 x 2) applies it, each seen by name through nginx
    wait_until_served(stack.url("level3"), split, timeout_s=30, workers=4)
    # A slower month (x1.6) with its labels, streamed through nginx to both replicas
    month = "2019-05"
    config = ReplayConfig(months=["2019-04", month], out_dir=stack.home, rows=3000, seed=5)
    trips = inject(load_trips(config, month, 1), month, [Injection.parse(f"{month}:slower=1.6")], 5)
    rides = ride_payloads(trips, month)
    predicted, versions, _ = stream(stack.url("level3"), rides)
    assert set(versions[~np.isnan(predicted)]) == {1}  # blue only: green takes no traffic
    labels = send_feedback(
        stack.url("level3"), rides, predicted, durations(trips), DEV_FEEDBACK_TOKEN
    )
    assert labels["accepted"] >= 2500, labels

    answer = stack.cli(
        "level4", "monitor", "--start", f"{month}-01T00:00:00", "--end", "2019-06-01T00:00:00"
    )
    decision = answer["decision"]
    assert (decision["action"], decision["rule"]) == ("canary_deployed", "gate_passed"), decision
    # the retraining ran the level-2 flow on the stack's MLflow server (S3 artifacts) ...
    outcome = decision["details"]["outcome"]
    registered = outcome["candidate"]
    # v4, after the seed (v1) and the two flows above. The registry's champion alias says v3
    # (the drill's flow beat v1) while blue still serves v1: the gate compares the candidate
    # with what serves, v1 (issue 19)
    assert (registered, outcome["champion"], outcome["canary_share"]) == (4, 1, 20), outcome
    # ... and the canary went to green on both replicas, through nginx's admin API
    deadline = time.monotonic() + 30
    while (answers := served(stack)) != {("blue", "1"), ("green", str(registered))}:
        assert time.monotonic() < deadline, answers
        time.sleep(0.5)
    status = stack.cli("level3", "status")
    assert (status["state"]["green"], status["state"]["green_percent"]) == (registered, 20.0)


def test_processes_in_homes_of_their_own_share_everything_through_urls(
    stack: Stack, tmp_path: Path
) -> None:
    first, second = stack.replica_url(0), stack.replica_url(1)
    # a change sent to one replica is served by the other (the state is in PostgreSQL)
    split = stack.elsewhere(tmp_path / "operator", "level3", "set-split", "--share", "40",
                            "--url", first)["state"]  # fmt: skip
    # every worker of both replicas applies it (the one that took the change has a second)
    for url in (first, second):
        wait_until_served(url, split, timeout_s=30)
    # a ride gets the same variant from every replica
    rides = [ride(f"mh-{i}") for i in range(60)]
    answers = [
        [http_json("POST", f"{url}/predict", r)[1] for r in rides] for url in (first, second)
    ]
    pairs = [[(a["variant"], a["model_version"]) for a in per] for per in answers]
    assert pairs[0] == pairs[1] and {v for v, _ in pairs[0]} == {"blue", "green"}
    # labels posted to one replica join predictions made on another
    only_second = [ride(f"mh2-{i}") for i in range(20)]
    for r in only_second:
        assert http_json("POST", f"{second}/predict", r)[0] == 200
    labels = [{"ride_id": r["ride_id"], "duration": 12.0} for r in only_second]
    status, answer = http_json(
        "POST", f"{first}/feedback", {"feedback": labels},
        headers={"Authorization": f"Bearer {DEV_FEEDBACK_TOKEN}"},
    )  # fmt: skip
    assert (status, answer["accepted"], answer["rejected"]) == (200, 20, []), answer
    (joined,) = stack.state_query(
        "SELECT COUNT(*) FROM predictions WHERE request_key LIKE 'mh2-%' AND actual = 12.0"
    )
    assert joined == 20
    # the A/B report and level 4's audit log, from yet another home, see all of it
    report = stack.elsewhere(tmp_path / "analyst", "level3", "ab-report", "--min-samples", "1",
                             "--url", first)  # fmt: skip
    assert sum(v["n"] for v in report["variants"].values()) >= 20, report
    decisions = stack.elsewhere(tmp_path / "auditor", "level4", "decisions")["decisions"]
    assert any(d["action"] == "canary_deployed" for d in decisions), decisions
    # no process home holds a database: nothing is shared through a disk
    homes = stack.home / "stack" / "homes"
    assert {p.name for p in homes.iterdir()} >= {"level3-1", "level3-2"}
    # (by content: Prometheus's multiprocess files are named *.db but are not databases)
    files = [p for p in homes.rglob("*") if p.is_file()]
    databases = [p for p in files if p.read_bytes()[:16] == b"SQLite format 3\x00"]
    assert files and databases == [], databases
    # nor does the operator's: the level-3 and level-4 state went to PostgreSQL
    assert list(stack.home.glob("level[34]/*.db")) == []
    assert not any(p.name.endswith("-wal") for p in files)


def recent_rides(prefix: str, n: int) -> list[dict]:
    """Rides picked up in the last half hour: what `make monitor`'s last-hour window reads."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    return [
        {**ride(f"{prefix}-{i}"), "pickup_datetime": (now - timedelta(minutes=30)).isoformat()}
        for i in range(n)
    ]


def test_the_workflows_close_the_loop_as_fresh_runners(stack: Stack, tmp_path: Path) -> None:
    """train.yml, deploy.yml and monitor.yml: their own `run:` steps, each in a fresh clone
    with an empty home and only the env and secrets the workflow declares."""
    secrets_ = {
        "MLFLOW_TRACKING_URI": stack.url("mlflow"),
        "LEVEL3_URL": stack.url("level3"),
        "TAXI_MLOPS_ADMIN_TOKEN": ADMIN_TOKEN,
        "TAXI_MLOPS_STATE_DB_URL": stack.env["TAXI_MLOPS_STATE_DB_URL"],
    }

    def runner(workflow: str, job: str, clone: str, **inputs: object) -> list:
        runs = run_job(workflow, job, clean_copy(tmp_path / clone), secrets=secrets_,
                       inputs=inputs)  # fmt: skip
        assert runs and runs[-1].returncode == 0, failure(workflow, job, runs)
        return runs

    before = stack.cli("level2", "status")["versions"][-1]["version"]
    runner("train.yml", "train", "train-runner", train_args=(
        "--generated --train-months 2019-02 --val-month 2019-03 --rows 4000 --models ridge "
        "--trials 1"))  # fmt: skip
    version = stack.cli("level2", "status")["versions"][-1]["version"]
    assert version == before + 1  # registered in the stack's registry, not a runner's file
    generation = stack.cli("level3", "status")["state"]["generation"]
    runner("deploy.yml", "deploy", "deploy-runner", version=version, canary_share="10",
           final_share="50")  # fmt: skip
    history = stack.cli("level3", "status")["history"]
    steps = [(h["green"], h["green_percent"], h["blue"]) for h in history
             if h["generation"] > generation]  # fmt: skip
    assert steps[0][:2] == (version, 10.0) and steps[1][:2] == (version, 50.0), steps
    assert steps[-1][2] == version  # promoted after both smoke checks

    # the monitor reads the shared log: rides (with labels) in the last hour, on any replica
    rides = recent_rides("wf", 120)
    for r in rides:
        assert http_json("POST", f"{stack.url('level3')}/predict", r)[0] == 200
    labels = [{"ride_id": r["ride_id"], "duration": 11.0} for r in rides]
    http_json("POST", f"{stack.url('level3')}/feedback", {"feedback": labels},
              headers={"Authorization": f"Bearer {DEV_FEEDBACK_TOKEN}"})  # fmt: skip
    decided = len(stack.cli("level4", "decisions")["decisions"])
    runner("monitor.yml", "monitor", "monitor-runner-1")
    first = stack.cli("level4", "decisions")["decisions"]
    # it saw the canary the earlier loop left (replaced since by the deploy): state, not a file
    assert len(first) == decided + 1 and first[-1]["rule"] == "canary_gone", first[-1]
    window = stack.cli("level4", "windows")["windows"][-1]
    assert window["rows"] >= 120 and window["labelled"] >= 120, window
    # the state the first runner left, with the cooldown a promotion would have started: the
    # second runner must read both from the database, not from its (empty) home
    from level4_automation.store import MonitoringStore

    store = MonitoringStore(stack.env["TAXI_MLOPS_STATE_DB_URL"])
    left = store.state()
    assert (left.phase, left.canary_version, left.last_window) == (
        "watch", None, first[-1]["window_start"]
    ), left  # fmt: skip
    store.save_state(replace(left, cooldown_left=3))
    runner("monitor.yml", "monitor", "monitor-runner-2")
    second = stack.cli("level4", "decisions")["decisions"]
    # the second runner continued from the first one's state (watching, no canary to judge)
    assert len(second) == decided + 2 and second[-1]["rule"] != "canary_gone", second[-1]
    assert second[-1]["details"]["thresholds"]["cooldown_left"] == 3, second[-1]
    assert store.state().cooldown_left == 2  # one window of the cooldown served

    # two cycles at once: while one holds the lock, a runner's cycle is refused, by name
    with store.locked():
        runs = run_job("monitor.yml", "monitor", clean_copy(tmp_path / "monitor-runner-3"),
                       secrets=secrets_)  # fmt: skip
    assert runs[-1].returncode != 0
    assert "another monitoring cycle is running" in runs[-1].stdout + runs[-1].stderr
    assert len(stack.cli("level4", "decisions")["decisions"]) == decided + 2  # it did nothing


def stopped_cleanly(stack: Stack) -> None:
    down = stack.cli("stack", "down")
    assert down["ok"] and down["left_running"] == [] and down["strays"] == [], down
    assert marked_processes(str(stack.home / "stack")) == []
    for url in (stack.url("level3"), stack.url("mlflow"), stack.url("prefect")):
        with pytest.raises(urllib.error.URLError):
            http_json("GET", f"{url}/health", timeout=2)


def test_down_leaves_nothing_and_up_brings_back_registry_models_and_split(stack: Stack) -> None:
    before = served(stack)
    stopped_cleanly(stack)
    # PostgreSQL keeps the registry, the S3 recording the model files, the home the split
    again = stack.cli("stack", "up", timeout=900)
    assert re.fullmatch(r"v\d+ in the registry", again["actions"]["champion"])
    assert "objects restored" in again["actions"]["s3"]
    assert served(stack) == before
    stopped_cleanly(stack)
