"""The repository's linters, run as tests so `make test` (and CI) enforce them."""

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
    assert {"ruff", "ruff-format", "nbstripout", "check-github-workflows", "zizmor"} <= ids
