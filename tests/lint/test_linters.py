"""The repository's linters, run as tests so `make test` (and CI) enforce them.

mypy is not repeated here: `make lint`, which runs it (the product packages, at the strictness
pyproject.toml's [tool.mypy] sets), runs in full in tests/integration/test_workflow_steps.py,
as ci.yml's lint job runs it on a fresh runner; a second run would cost ~45 s of CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.lint
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def check(*command: str) -> None:
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, f"{' '.join(command)}\n{completed.stdout}\n{completed.stderr}"


def test_ruff() -> None:
    check(str(BIN / "ruff"), "check", ".")
    check(str(BIN / "ruff"), "format", "--check", ".")


def test_notebooks_have_no_outputs() -> None:
    check(str(BIN / "nbstripout"), "--verify", *map(str, ROOT.glob("level*/*.ipynb")))


def test_workflows_match_the_github_schema() -> None:
    assert WORKFLOWS
    check(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, WORKFLOWS),
    )


def test_compose_file_matches_the_compose_spec() -> None:
    check(
        str(BIN / "check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(ROOT / "docker-compose.yml"),
    )


def test_zizmor_finds_nothing() -> None:
    check(str(BIN / "zizmor"), "--offline", "--no-progress", ".github/workflows")


def test_dockerfiles() -> None:
    dockerfiles = [ROOT / "Dockerfile", *sorted(ROOT.glob("level*/Dockerfile"))]
    assert len(dockerfiles) == 2
    check(str(BIN / "hadolint"), *map(str, dockerfiles))


def test_shell_scripts() -> None:
    scripts = [ROOT / ".ci" / "run", *sorted((ROOT / "infra" / "scripts").glob("*.sh"))]
    check(str(BIN / "shellcheck"), *map(str, scripts))


def test_terraform_is_formatted() -> None:
    check(str(ROOT / "infra" / "scripts" / "terraform.sh"), "fmt", "-check", "-recursive", "infra")


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_hardening(workflow: Path) -> None:
    doc = yaml.safe_load(workflow.read_text())
    assert doc.get("permissions") is not None, "top-level permissions must be set"
    for name, job in doc["jobs"].items():
        assert "timeout-minutes" in job, f"job {name} has no timeout-minutes"
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                ref = uses.rsplit("@", 1)[-1]
                assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), (
                    f"{uses}: pin actions by full commit SHA"
                )
            run = step.get("run", "")
            if run:
                assert "make " in run or run.startswith(("git ", "echo ")), (
                    f"job {name}: run steps call make targets, as developers do: {run!r}"
                )


def test_pre_commit_hooks_are_local() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    assert all(repo["repo"] == "local" for repo in config["repos"])
    ids = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "nbstripout", "check-github-workflows", "zizmor"} <= ids


#: checkov lives in a virtualenv of its own (`make install`): it pins packages others need
CHECKOV = BIN.parent / "checkov" / "bin" / "checkov"
CHECKOV_SCANS = {
    "terraform": ["-d", "infra"],
    "github_actions": ["-d", ".github/workflows"],
    "dockerfile": ["-f", "Dockerfile", "-f", "level1_devops/Dockerfile"],
}


@pytest.mark.parametrize("framework", sorted(CHECKOV_SCANS))
def test_checkov_fails_nothing_and_every_skip_gives_its_reason(framework: str) -> None:
    import json

    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} is missing: `make install` creates it")
    completed = subprocess.run(
        [str(CHECKOV), "--skip-download", "--framework", framework, "-o", "json",
         *CHECKOV_SCANS[framework]],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    reports = json.loads(completed.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    (report,) = [r for r in reports if r["check_type"] == framework]
    failed = [(c["check_id"], c["file_path"], c["resource"]) for c in
              report["results"]["failed_checks"]]  # fmt: skip
    assert report["summary"]["passed"] > 0 and failed == [], failed
    assert report["summary"]["parsing_errors"] == 0
    unexplained = [
        (c["check_id"], c["file_path"], c["resource"])
        for c in report["results"]["skipped_checks"]
        if len((c["check_result"].get("suppress_comment") or "").strip()) < 20
    ]
    assert unexplained == [], "each checkov:skip needs its reason beside it"


def steps_using(action: str) -> list[tuple[str, dict]]:
    found = []
    for workflow in WORKFLOWS:
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith(action + "@"):
                    found.append((workflow.name, step))
    return found


def test_uploads_of_hidden_files_ask_for_them() -> None:
    """upload-artifact >= 4.4 silently leaves out dotfiles (the plan's .terraform.lock.hcl)
    unless include-hidden-files is true."""
    uploads = steps_using("actions/upload-artifact")
    assert uploads
    for workflow, step in uploads:
        paths = str(step["with"]["path"]).split()
        if any(part.startswith(".") for p in paths for part in Path(p).parts):
            assert step["with"].get("include-hidden-files") is True, (workflow, step["with"])


def test_terraform_runs_by_hand_and_applies_only_main() -> None:
    """A change of a repository variable (AWS_TFVARS) needs no dummy commit."""
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "terraform.yml").read_text())
    triggers = doc.get(True) or doc["on"]  # YAML 1.1 reads `on:` as True
    assert "workflow_dispatch" in triggers
    condition = doc["jobs"]["apply"]["if"]
    assert "workflow_dispatch" in condition and "github.ref == 'refs/heads/main'" in condition
    assert doc["jobs"]["apply"]["environment"] == "infrastructure"


def test_only_one_scheduler_runs_level4_and_train_picks_its_place() -> None:
    """In AWS level 4 is a scheduled ECS task: the hourly workflow is opt-in. train.yml runs
    either the ECS training task or the flow on the runner, never both."""
    monitor = yaml.safe_load((ROOT / ".github" / "workflows" / "monitor.yml").read_text())
    assert monitor["jobs"]["monitor"]["if"] == "${{ vars.LEVEL4_SCHEDULER == 'github' }}"
    train = yaml.safe_load((ROOT / ".github" / "workflows" / "train.yml").read_text())["jobs"]
    assert train["train"]["if"] == "${{ vars.AWS_TRAIN_TASK == '' }}"
    assert train["train-ecs"]["if"] == "${{ vars.AWS_TRAIN_TASK != '' }}"
