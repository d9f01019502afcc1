"""Run a one-off ECS task of infra/envs/aws (the training task) and wait for it, as a CI step:
RunTask with the given command, poll until the task stops, print the end of its log, and exit
with the container's exit code. A run past --timeout is stopped, not left running.

    python infra/scripts/ecs_task.py --task "$ECS_TRAIN_TASK" -- level2 train --generated ...

--task is the JSON of `terraform output -raw train_task` (cluster, taskDefinition, container,
subnets, securityGroups, logGroup, logStreamPrefix). Credentials and region come from the usual
AWS variables (aws-actions/configure-aws-credentials sets them in GitHub Actions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEYS = (
    "cluster",
    "taskDefinition",
    "container",
    "subnets",
    "securityGroups",
    "logGroup",
    "logStreamPrefix",
)


class TaskError(Exception):
    """The task could not be described, started or finished: the message says which."""


@dataclass(frozen=True)
class TaskSpec:
    cluster: str
    task_definition: str
    container: str
    subnets: list[str]
    security_groups: list[str]
    log_group: str
    log_stream_prefix: str

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        try:
            found = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(
                f"--task: not JSON ({exc}); use `terraform output -raw train_task`"
            ) from None
        if not isinstance(found, dict):
            raise TaskError("--task: expected a JSON object (terraform output -raw train_task)")
        missing = [key for key in KEYS if not found.get(key)]
        if missing:
            raise TaskError(f"--task: missing {', '.join(missing)}")
        return cls(*(found[key] for key in KEYS))


def start(ecs: Any, spec: TaskSpec, command: list[str]) -> str:
    answer = ecs.run_task(
        cluster=spec.cluster,
        taskDefinition=spec.task_definition,
        launchType="FARGATE",
        count=1,
        startedBy="taxi-mlops-ci",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": spec.subnets,
                "securityGroups": spec.security_groups,
                "assignPublicIp": "DISABLED",
            }
        },
        overrides={"containerOverrides": [{"name": spec.container, "command": command}]},
    )
    if answer.get("failures") or not answer.get("tasks"):
        raise TaskError(f"RunTask refused: {answer.get('failures')}")
    return str(answer["tasks"][0]["taskArn"])


def wait_stopped(
    ecs: Any,
    spec: TaskSpec,
    arn: str,
    timeout_s: float,
    poll_s: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The task once it has stopped; stopped by us when it outlives the timeout."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        (task,) = ecs.describe_tasks(cluster=spec.cluster, tasks=[arn])["tasks"]
        status = str(task.get("lastStatus"))
        if status != last:
            say(f"task {arn.rsplit('/', 1)[-1]}: {status}")
            last = status
        if status == "STOPPED":
            return dict(task)
        if time.monotonic() > deadline:
            ecs.stop_task(cluster=spec.cluster, task=arn, reason=f"ran past {timeout_s:.0f} s")
            raise TaskError(f"the task ran past {timeout_s:.0f} s and was stopped")
        time.sleep(poll_s)


def log_tail(logs: Any, spec: TaskSpec, arn: str, lines: int = 50) -> list[str]:
    stream = f"{spec.log_stream_prefix}/{spec.container}/{arn.rsplit('/', 1)[-1]}"
    try:
        events = logs.get_log_events(
            logGroupName=spec.log_group, logStreamName=stream, limit=lines, startFromHead=False
        )["events"]
    except Exception as exc:  # the log is a courtesy: its absence must not hide the exit code
        return [f"(no log: {exc})"]
    return [str(event["message"]) for event in events]


def outcome(task: dict[str, Any], container: str) -> tuple[int, str]:
    """The container's exit code, and why it stopped."""
    mine = [c for c in task.get("containers", []) if c.get("name") == container]
    reason = str(task.get("stoppedReason", ""))
    if not mine or mine[0].get("exitCode") is None:
        return 1, f"the container never ran to an exit code ({reason or 'no reason given'})"
    code = int(mine[0]["exitCode"])
    return code, f"exit code {code}" + (f" ({reason})" if reason else "")


def run(
    ecs: Any,
    logs: Any,
    spec: TaskSpec,
    command: list[str],
    *,
    timeout_s: float,
    poll_s: float = 15.0,
    say: Callable[[str], None] | None = None,
) -> int:
    say = say or _say
    arn = start(ecs, spec, command)
    say(f"started {arn}: {' '.join(command)}")
    task = wait_stopped(ecs, spec, arn, timeout_s, poll_s, say)
    code, why = outcome(task, spec.container)
    for line in log_tail(logs, spec, arn):
        say(f"  | {line}")
    say(f"{spec.task_definition}: {why}")
    return code


def _say(line: str) -> None:
    """A CI step's output: each line as it happens."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="terraform output -raw train_task")
    parser.add_argument("--timeout", type=float, default=3300.0, help="seconds [3300]")
    parser.add_argument("--poll", type=float, default=15.0, help="seconds between looks [15]")
    parser.add_argument("command", nargs="+", help="the container's command, after --")
    args = parser.parse_args(argv)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        spec = TaskSpec.from_json(args.task)
        return run(
            boto3.client("ecs"),
            boto3.client("logs"),
            spec,
            args.command,
            timeout_s=args.timeout,
            poll_s=args.poll,
        )
    except (TaskError, BotoCoreError, ClientError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
