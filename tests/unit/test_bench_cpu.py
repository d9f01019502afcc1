"""The benchmarks' CPU accounting (benchmarks/cpu.py): a server's CPU is its whole process tree
(gunicorn's work happens in the workers, not in the master whose pid the benchmark holds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.cpu import CpuSpent, cpu_spent, tree_cpu_s

#: a child that spends ~0.5 s of CPU
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"


def test_a_process_tree_counts_its_childrens_cpu() -> None:
    # "; exit" keeps the shell from exec'ing Python in its place: the burner is its child
    burner = BURN + "time.sleep(60)\n"
    parent = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -c "$0"; exit', burner])
    try:
        if tree_cpu_s(parent.pid) is None:
            pytest.skip("/proc does not list children here (CONFIG_PROC_CHILDREN)")
        deadline = time.monotonic() + 30
        while (spent := tree_cpu_s(parent.pid) or 0.0) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spent >= 0.4  # the shell itself spends ~0
    finally:
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        for child in children.read_text().split() if children.exists() else []:
            os.kill(int(child), signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_the_load_generators_cpu_is_the_reaped_childs() -> None:
    with cpu_spent(os.getpid()) as spent:
        subprocess.run([sys.executable, "-c", BURN], check=True)
    assert spent.client_s >= 0.4


def test_per_request_figures() -> None:
    assert CpuSpent(0.3, 0.03).per_request_us(1000) == pytest.approx(
        {"server_cpu_us": 300.0, "client_cpu_us": 30.0}
    )
    assert CpuSpent(None, 0.03).per_request_us(1000)["server_cpu_us"] is None
    assert CpuSpent(0.3, 0.03).per_request_us(0) == {"server_cpu_us": None, "client_cpu_us": None}
