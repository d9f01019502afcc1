"""The workflows' AWS jobs, run as a fresh runner would run their `run:` steps (in a clean copy,
with only the variables they declare): train.yml's `train-ecs` against a stand-in for the ECS
and CloudWatch Logs APIs (tests/fake_ecs.py; boto3 reaches it through AWS_ENDPOINT_URL), and
image.yml's push with stand-in `aws` and `docker` commands that record what they were asked.
The `uses:` step that gets AWS credentials through OIDC is the one part not run."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fake_ecs import TASK_ARN, FakeEcs
from tests.workflows import clean_copy, failure, run_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRAIN_TASK = json.dumps({  # what `terraform output -raw train_task` prints
    "cluster": "taxi-mlops-prod",
    "taskDefinition": "taxi-mlops-prod-train",
    "container": "taxi-mlops-prod-train",
    "subnets": ["subnet-a", "subnet-b"],
    "securityGroups": ["sg-services"],
    "logGroup": "/ecs/taxi-mlops-prod",
    "logStreamPrefix": "taxi-mlops-prod-train",
})  # fmt: skip


@pytest.fixture
def as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """What aws-actions/configure-aws-credentials leaves in a job's environment."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "ASIAFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake",
        "AWS_SESSION_TOKEN": "fake",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("exit_code", [0, 3])
def test_train_ecs_runs_the_training_task_with_the_inputs_and_reports_its_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_configured: None, exit_code: int
) -> None:
    fake = FakeEcs(exit_code=exit_code, log_lines=["linear 5.838", "best: hgb; registered v4"])
    with fake.serve() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("ECS_POLL_SECONDS", "0.1")
        runs = run_job("train.yml", "train-ecs", clean_copy(tmp_path / "runner"),
                       secrets={"AWS_TRAIN_TASK": TRAIN_TASK},
                       inputs={"train_args": "--generated --rows 5000 --models ridge"})  # fmt: skip
    assert [r.command for r in runs] == ['make train-ecs TRAIN_ARGS="$TRAIN_ARGS"']
    (run,) = runs
    if exit_code == 0:
        assert run.returncode == 0, failure("train.yml", "train-ecs", runs)
    else:
        assert run.returncode != 0 and f"exit code {exit_code}" in run.stdout
    assert "| best: hgb; registered v4" in run.stdout and TASK_ARN in run.stdout
    operations = [name for name, _ in fake.calls]
    assert operations[0] == "RunTask" and operations[-1] == "GetLogEvents"
    assert "StopTask" not in operations
    started = fake.calls[0][1]
    assert (started["cluster"], started["taskDefinition"], started["launchType"]) == (
        "taxi-mlops-prod", "taxi-mlops-prod-train", "FARGATE"
    )  # fmt: skip
    network = started["networkConfiguration"]["awsvpcConfiguration"]
    assert network == {"subnets": ["subnet-a", "subnet-b"], "securityGroups": ["sg-services"],
                       "assignPublicIp": "DISABLED"}  # fmt: skip
    (override,) = started["overrides"]["containerOverrides"]
    assert override == {
        "name": "taxi-mlops-prod-train",
        "command": ["level2", "train", "--generated", "--rows", "5000", "--models", "ridge"],
    }
    logs = fake.calls[-1][1]
    assert logs["logStreamName"] == "taxi-mlops-prod-train/taxi-mlops-prod-train/0123456789abcdef"


def test_train_ecs_without_the_task_variable_says_what_to_set(
    tmp_path: Path, as_configured: None
) -> None:
    runs = run_job("train.yml", "train-ecs", clean_copy(tmp_path / "runner"))
    assert runs[-1].returncode != 0
    assert "ECS_TRAIN_TASK is not set" in runs[-1].stderr and "Traceback" not in runs[-1].stderr


def fake_command(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> {folder}/calls\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("already_there", [False, True])
def test_image_push_builds_and_pushes_the_commit_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_configured: None, already_there: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_command(bin_dir, "aws", f"""
case "$1 $2" in
  "ecr describe-images") exit {0 if already_there else 254} ;;
  "ecr get-login-password") echo fake-password ;;
esac""")  # fmt: skip
    fake_command(bin_dir, "docker", 'if [[ $1 == login ]]; then read -r password; '
                 f'echo "$password" >> {bin_dir}/password; fi')  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    repo = clean_copy(tmp_path / "runner")
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "checkout"]):
        subprocess.run([*git, *command], cwd=repo, check=True, capture_output=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    runs = run_job("image.yml", "push", repo,
                   secrets={"ECR_REPOSITORY_URL": f"{registry}/taxi-mlops-prod"})  # fmt: skip
    assert runs and runs[-1].returncode == 0, failure("image.yml", "push", runs)
    calls = (bin_dir / "calls").read_text().splitlines()
    assert calls[0] == (
        f"aws ecr describe-images --repository-name taxi-mlops-prod --image-ids imageTag={commit}"
    )
    if already_there:
        assert calls == calls[:1] and "already in ECR" in runs[-1].stdout
        return
    # the two sides of `aws ecr get-login-password | docker login` run at once: either order
    assert sorted(calls[1:3]) == [
        "aws ecr get-login-password",
        f"docker login --username AWS --password-stdin {registry}",
    ]
    assert calls[3:] == [
        f"docker build --pull -t {registry}/taxi-mlops-prod:{commit} .",
        f"docker push {registry}/taxi-mlops-prod:{commit}",
    ]
    assert (bin_dir / "password").read_text().strip() == "fake-password"  # by stdin, not argv
