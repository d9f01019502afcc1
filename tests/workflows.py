"""Run a GitHub Actions job's `run:` steps as a fresh runner would: in a clean copy of the
repository (its tracked files, as in the working tree), with CI=true, the job's `env:` resolved
from the given secrets and inputs, and nothing else from the test's environment that would
point it at a store or a home. The copy reuses this virtualenv (VENV=...): nothing is
installed twice."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
#: variables a runner would not have: they would point a step at this machine's stores or home
_LOCAL_ONLY = ("TAXI_MLOPS_", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME")


def clean_copy(target: Path) -> Path:
    """The tracked files as they are in the working tree (modification times kept)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    return target


def require_installed_venv() -> None:
    """A step's `make` installs the project when the virtualenv is older than pyproject.toml:
    into this virtualenv (VENV=...), from the copy, which would re-point the editable install
    at a temp folder. Skip instead (`make install` first)."""
    import pytest

    stamp = VENV / "bin" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.skip("the virtualenv is older than pyproject.toml: run `make install` first")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def dispatch_inputs(doc: dict) -> dict:
    triggers = doc.get(True) or doc.get("on") or {}  # YAML 1.1 reads `on:` as True
    return (triggers.get("workflow_dispatch") or {}).get("inputs") or {}


def resolve(value: object, workspace: Path, secrets: dict[str, str], inputs: dict) -> str:
    """The few expressions our workflows use in `env:`, as GitHub would resolve them: a secret
    or variable not given is empty; an input not given takes its default."""

    def given(name: str) -> str:
        if name in inputs and not isinstance(inputs[name], dict):
            return str(inputs[name])
        default = (
            (inputs.get(name) or {}).get("default") if isinstance(inputs.get(name), dict) else None
        )
        return "" if default is None else str(default)

    text = str(value).replace("${{ github.workspace }}", str(workspace))
    text = re.sub(
        r"\$\{\{\s*(?:secrets|vars)\.(\w+)\s*\}\}", lambda m: secrets.get(m.group(1), ""), text
    )
    text = re.sub(
        r"\$\{\{\s*inputs\.(\w+)\s*\|\|\s*'([^']*)'\s*\}\}",
        lambda m: given(m.group(1)) or m.group(2),
        text,
    )
    text = re.sub(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", lambda m: given(m.group(1)), text)
    assert "${{" not in text, f"unhandled expression: {text}"
    return text


@dataclass(frozen=True)
class StepRun:
    command: str
    returncode: int
    stdout: str
    stderr: str


def run_job(
    workflow: str,
    job: str,
    workspace: Path,
    *,
    secrets: dict[str, str] | None = None,
    inputs: dict[str, object] | None = None,
    skip: frozenset[str] = frozenset(),
    timeout_s: float = 900,
) -> list[StepRun]:
    """The job's `run:` steps in order, until one fails (as a runner stops). Steps with an
    `if:` (a failure handler, an optional upload) are left out."""
    require_installed_venv()
    doc = load(workflow)
    spec = doc["jobs"][job]
    declared = {**dispatch_inputs(doc), **(inputs or {})}
    env = {
        k: resolve(v, workspace, secrets or {}, declared)
        for k, v in (spec.get("env") or {}).items()
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(_LOCAL_ONLY)}
    runs = []
    for step in spec["steps"]:
        command = step.get("run")
        if command is None or "if" in step or command.strip() in skip:
            continue
        completed = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", command],
            cwd=workspace,
            # a runner's ~/.prefect is new: here it is inside the workspace
            env={
                **base,
                "CI": "true",
                "VENV": str(VENV),
                "PREFECT_HOME": str(workspace / ".prefect"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        runs.append(StepRun(command, completed.returncode, completed.stdout, completed.stderr))
        if completed.returncode != 0:
            break
    return runs


def failure(workflow: str, job: str, runs: list[StepRun]) -> str:
    last = runs[-1]
    output = f"{last.stdout[-3000:]}\n{last.stderr[-3000:]}"
    return f"{workflow} job {job}: `{last.command}` failed\n{output}"
