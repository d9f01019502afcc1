"""infra/scripts/ecs_task.py (train.yml's `make train-ecs`) on stand-in clients: what it does
when the task cannot start, outlives its timeout, or stops without running; bad --task input.
The boto3 path end to end is in tests/integration/test_cloud_workflows.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

PATH = Path(__file__).resolve().parents[2] / "infra" / "scripts" / "ecs_task.py"
_spec = importlib.util.spec_from_file_location("ecs_task", PATH)
assert _spec and _spec.loader
ecs_task = importlib.util.module_from_spec(_spec)
sys.modules["ecs_task"] = ecs_task  # dataclasses look their module up there
_spec.loader.exec_module(ecs_task)

SPEC = ecs_task.TaskSpec("c", "fam", "box", ["s1"], ["g1"], "/ecs/x", "box")
ARN = "arn:aws:ecs:r:1:task/c/abc"


class Ecs:
    def __init__(self, tasks: list[dict[str, Any]], started: dict[str, Any] | None = None) -> None:
        self.tasks, self.stopped = tasks, []
        self.started = started or {"tasks": [{"taskArn": ARN}], "failures": []}

    def run_task(self, **_: Any) -> dict[str, Any]:
        return self.started

    def describe_tasks(self, **_: Any) -> dict[str, Any]:
        return {"tasks": [self.tasks.pop(0) if len(self.tasks) > 1 else self.tasks[0]]}

    def stop_task(self, **kwargs: Any) -> None:
        self.stopped.append(kwargs)


class Logs:
    def get_log_events(self, **_: Any) -> dict[str, Any]:
        raise RuntimeError("ResourceNotFoundException: the log stream does not exist")


def run(ecs: Ecs, timeout_s: float = 5) -> tuple[int, list[str]]:
    said: list[str] = []
    code = ecs_task.run(ecs, Logs(), SPEC, ["level2", "train"], timeout_s=timeout_s, poll_s=0,
                        say=said.append)  # fmt: skip
    return code, said


def test_a_refused_start_is_an_error_naming_the_failure() -> None:
    ecs = Ecs([], started={"tasks": [], "failures": [{"reason": "RESOURCE:MEMORY"}]})
    with pytest.raises(ecs_task.TaskError, match=r"RunTask refused.*RESOURCE:MEMORY"):
        run(ecs)


def test_a_task_past_its_timeout_is_stopped_not_left_running() -> None:
    ecs = Ecs([{"taskArn": ARN, "lastStatus": "RUNNING"}])
    with pytest.raises(ecs_task.TaskError, match="ran past 0 s and was stopped"):
        run(ecs, timeout_s=0)
    assert ecs.stopped == [{"cluster": "c", "task": ARN, "reason": "ran past 0 s"}]


def test_a_task_that_never_ran_fails_with_the_reason_and_a_missing_log_hides_nothing() -> None:
    ecs = Ecs([{"taskArn": ARN, "lastStatus": "STOPPED",
                "stoppedReason": "CannotPullContainerError: image not found",
                "containers": [{"name": "box"}]}])  # fmt: skip
    code, said = run(ecs)
    assert code == 1
    assert "never ran to an exit code (CannotPullContainerError: image not found)" in said[-1]
    assert any("no log: ResourceNotFoundException" in line for line in said)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"cluster": "c"}), "missing taskDefinition, container, subnets"),
    ],
)
def test_bad_task_input_is_one_line_naming_the_problem(
    given: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ecs_task.main(["--task", given, "--", "level2", "train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --task: ") and problem in err and "Traceback" not in err
