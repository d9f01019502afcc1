"""The workflows' commands work: every `run:` step of each job that needs no live service and
no cloud credentials runs, in order, in a clean copy of the repository with CI=true.

Not run here: jobs behind an environment (deploy: approval before a production change), jobs
that talk to a running system (their env names the LEVEL3_URL secret: train, deploy and monitor
run against a real stack in tests/integration/test_stack.py), jobs that request an OIDC token
(terraform plan: AWS credentials), and jobs that declare TAXI_MLOPS_NEEDS_NETWORK (terraform's
AWS validate: the registry's provider). ci.yml's `make test` is this suite itself.
"""

from __future__ import annotations

import pytest

from tests.workflows import WORKFLOWS, failure, load, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SKIPPED_STEPS = frozenset({"make test"})  # this very suite


def runs_here(job: dict) -> bool:
    permissions = job.get("permissions") or {}
    env = job.get("env") or {}
    return (
        job.get("environment") is None
        and not (isinstance(permissions, dict) and permissions.get("id-token") == "write")
        and "TAXI_MLOPS_NEEDS_NETWORK" not in env
        and not any("secrets.LEVEL3_URL" in str(v) for v in env.values())
    )


def has_steps_to_run(job: dict) -> bool:
    return any("run" in step and step["run"].strip() not in SKIPPED_STEPS for step in job["steps"])


def runnable() -> list[tuple[str, str]]:
    return [
        (path.name, name)
        for path in sorted(WORKFLOWS.glob("*.yml"))
        for name, job in load(path.name)["jobs"].items()
        if runs_here(job) and has_steps_to_run(job)
    ]


@pytest.mark.parametrize(("workflow", "job"), runnable(), ids=lambda v: v)
def test_workflow_run_steps_succeed(workflow: str, job: str, tmp_path) -> None:
    from tests.workflows import clean_copy

    repo = clean_copy(tmp_path / "repo")
    runs = run_job(workflow, job, repo, skip=SKIPPED_STEPS)
    assert runs, f"{workflow} job {job}: no step ran"
    assert runs[-1].returncode == 0, failure(workflow, job, runs)
    if workflow == "train.yml":
        assert (repo / ".taxi-mlops" / "mlflow" / "mlflow.db").exists()  # the uploaded store
