"""infra/scripts/service.sh, the process supervisor of Terraform's local environment: it stops
the process it started, and never signals a process that merely has the recorded PID now."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "scripts" / "service.sh"


def service(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """A process nobody started through service.sh."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def test_stop_ends_the_process_group_it_started(tmp_path: Path) -> None:
    started = service("start", "svc", str(tmp_path), "-", "--", "sleep", "300")
    assert started.returncode == 0, started.stderr
    pid_file = tmp_path / "svc.pid"
    pid, identity = pid_file.read_text().split("\n")[:2]
    assert identity, "the start time is recorded with the PID"
    assert (
        "already running" in service("start", "svc", str(tmp_path), "-", "--", "sleep", "1").stdout
    )
    stopped = service("stop", "svc", str(tmp_path))
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout
    time.sleep(0.2)
    assert not running(int(pid)) and not pid_file.exists()


@pytest.mark.parametrize("recorded", ["{pid}\n12345\n", "{pid}\n"], ids=["other-start", "no-start"])
def test_a_stale_pid_file_never_gets_another_process_signalled(
    tmp_path: Path, bystander: subprocess.Popen, recorded: str
) -> None:
    """The PID now belongs to someone else (the file outlived its process): `stop` removes
    the file and signals nobody; `start` starts a new process instead of trusting it."""
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(recorded.format(pid=bystander.pid))
    stopped = service("stop", "svc", str(tmp_path))
    assert stopped.returncode == 0 and "not running" in stopped.stdout
    assert "not the process started here" in stopped.stderr
    time.sleep(0.2)
    assert running(bystander.pid) and not pid_file.exists()

    pid_file.write_text(recorded.format(pid=bystander.pid))
    started = service("start", "svc", str(tmp_path), "-", "--", "sleep", "300")
    assert started.returncode == 0 and "already running" not in started.stdout, started.stdout
    new_pid = int(pid_file.read_text().split()[0])
    assert new_pid != bystander.pid
    assert service("stop", "svc", str(tmp_path)).returncode == 0
    time.sleep(0.2)
    assert running(bystander.pid) and not running(new_pid)
