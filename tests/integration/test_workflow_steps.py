"""The workflows' commands work: every `run:` step of each job that needs no cloud
credentials runs, in order, in a clean copy of the repository with CI=true.

Not run here: jobs behind an environment (deploy, monitor, terraform apply: a live service,
secrets, approval), jobs that request an OIDC token (terraform plan: AWS credentials), and jobs
that declare TAXI_MLOPS_NEEDS_NETWORK (terraform's AWS validate: the registry's provider).
ci.yml's `make test` is this suite itself and is skipped. The copy reuses this virtualenv
(VENV=...), so nothing is installed twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SKIPPED_STEPS = {"make test"}  # this very suite


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


def resolve(value: object, workspace: Path, inputs: dict) -> str:
    """The few expressions our workflows use in `env:`, as GitHub would resolve them here."""
    text = str(value)
    text = text.replace("${{ github.workspace }}", str(workspace))
    text = re.sub(r"\$\{\{\s*(secrets|vars)\.\w+\s*\}\}", "", text)
    text = re.sub(
        r"\$\{\{\s*inputs\.(\w+)\s*\|\|\s*'([^']*)'\s*\}\}",
        lambda m: str(inputs.get(m.group(1), {}).get("default") or m.group(2)),
        text,
    )
    assert "${{" not in text, f"unhandled expression: {text}"
    return text


def runs_here(job: dict) -> bool:
    permissions = job.get("permissions") or {}
    return (
        job.get("environment") is None
        and not (isinstance(permissions, dict) and permissions.get("id-token") == "write")
        and "TAXI_MLOPS_NEEDS_NETWORK" not in (job.get("env") or {})
    )


def runnable(workflow: Path) -> bool:
    doc = yaml.safe_load(workflow.read_text())
    return any(runs_here(job) for job in doc["jobs"].values())


@pytest.mark.parametrize("workflow", [w for w in WORKFLOWS if runnable(w)], ids=lambda p: p.name)
def test_workflow_run_steps_succeed(workflow: Path, tmp_path: Path) -> None:
    stamp = VENV / "bin" / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
        pytest.skip("the virtualenv is older than pyproject.toml: run `make install` first")
    repo = clean_copy(tmp_path / "repo")
    doc = yaml.safe_load(workflow.read_text())
    triggers = doc.get(True) or doc.get("on") or {}  # YAML 1.1 reads `on:` as True
    inputs = (triggers.get("workflow_dispatch") or {}).get("inputs") or {}
    ran = 0
    for name, job in doc["jobs"].items():
        if not runs_here(job):
            continue
        env = {k: resolve(v, repo, inputs) for k, v in (job.get("env") or {}).items()}
        for step in job["steps"]:
            command = step.get("run")
            if command is None or command.strip() in SKIPPED_STEPS:
                continue
            completed = subprocess.run(
                ["bash", "-eo", "pipefail", "-c", command],
                cwd=repo,
                env={**os.environ, "CI": "true", "VENV": str(VENV), **env},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert completed.returncode == 0, (
                f"{workflow.name} job {name}: `{command}` failed\n"
                f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            )
            ran += 1
    assert ran, f"{workflow.name}: no step ran"
    if workflow.name == "train.yml":
        assert (repo / ".taxi-mlops" / "mlflow" / "mlflow.db").exists()  # the uploaded store
