"""Shared end-to-end runs: the demo on generated months is run once and checked by the demo and
comparison tests (all in test_compare.py, so one xdist worker makes the run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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
