"""Shared end-to-end runs: the demo on generated months is run once and checked by the demo and
comparison tests (all in test_compare.py, so one xdist worker makes the run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.services import free_port, start_service

CLI = str(Path(sys.executable).with_name("taxi-mlops"))


@dataclass(frozen=True)
class DemoRun:
    home: Path
    stdout: str
    report_dir: Path

    @property
    def result(self) -> dict:
        return json.loads((self.report_dir / "comparison.json").read_text())


def run_demo(home: Path, *args: str) -> DemoRun:
    """`taxi-mlops demo` as `make demo` runs it (human output), in its own home."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    completed = subprocess.run(
        [CLI, "demo", *args],
        capture_output=True,
        text=True,
        env={**env, "TAXI_MLOPS_HOME": str(home)},
        timeout=580,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    found = re.search(r"^Comparison report: (\S+)$", completed.stdout, flags=re.M)
    assert found, f"the demo did not end with the report's path:\n{completed.stdout[-2000:]}"
    return DemoRun(home, completed.stdout, Path(found.group(1)).parent)


@pytest.fixture(scope="session")
def demo_generated(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    return run_demo(tmp_path_factory.mktemp("demo") / "home", "--rows", "4000", "--trials", "1")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Prefect server (SQLite) for this test process, started on first use.

    Without PREFECT_API_URL every CLI run starts a temporary server, and in a new
    TAXI_MLOPS_HOME it first creates and migrates a Prefect database: 16 s of a 46 s two-month
    replay. Tests whose subject is not Prefect's embedded mode share this server instead; the
    embedded default stays covered by the demo, the README walkthroughs and the in-process flow
    tests.
    """
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    # only the API: these tests run flows and read nothing back from Prefect, and the
    # scheduler, event and cleanup services would poll its database all session long
    command = [str(Path(sys.executable).with_name("prefect")), "server", "start"]
    command += ["--no-services", "--no-ui"]
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with start_service(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        home / "server.log",
        health_path="/api/health",
        env=env,
        timeout_s=180,
    ) as server:
        yield f"{server.url}/api"


@pytest.fixture(scope="module")
def cli_prefect(prefect_server: str) -> Iterator[str]:
    """CLI subprocesses of this module use the shared Prefect server (see prefect_server)."""
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = prefect_server
    yield prefect_server
    if before is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = before
