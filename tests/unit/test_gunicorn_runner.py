"""Running services under gunicorn: finding a master's workers on any OS."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import shared.gunicorn_runner as runner


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Two child processes of this one, stopped by PID afterwards (other tests may have
    children of their own running: the checks look for these two)."""
    started = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)
    ]
    try:
        yield sorted(p.pid for p in started)
    finally:
        for process in started:
            process.kill()
            process.wait()


def test_a_masters_workers_on_linux_read_from_proc(children: list[int]) -> None:
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("this kernel has no /proc/<pid>/task/<pid>/children")
    assert set(children) <= set(runner.worker_pids(os.getpid()) or [])


def test_where_proc_cannot_tell_psutil_finds_the_same_workers(
    children: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = Path.read_text

    def no_proc(path: Path, *args: object, **kwargs: object) -> str:
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)  # as on macOS
        return real_read(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", no_proc)
    assert set(children) <= set(runner.worker_pids(os.getpid()) or [])


def test_a_master_that_is_gone_has_no_worker_list(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its PID names no process now
    assert runner.worker_pids(gone.pid) is None
