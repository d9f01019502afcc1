"""A stand-in for the two AWS APIs `make train-ecs` calls (ECS and CloudWatch Logs), on
127.0.0.1, for boto3 pointed at it with AWS_ENDPOINT_URL: it records each call and plays a task
that runs, then stops with a given exit code. Both APIs speak AWS's JSON 1.1 protocol (a POST
whose X-Amz-Target header names the operation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import serving

TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/taxi-mlops-prod/0123456789abcdef"


@dataclass
class FakeEcs:
    exit_code: int = 0
    log_lines: list[str] = field(default_factory=lambda: ["best: hgb; registered v1"])
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    looks: int = 0

    def answer(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, body))
        if operation == "RunTask":
            return {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "PROVISIONING"}], "failures": []}
        if operation == "DescribeTasks":
            self.looks += 1
            if self.looks < 3:
                return {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "RUNNING"}]}
            container = {"name": "taxi-mlops-prod-train", "exitCode": self.exit_code}
            return {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "STOPPED",
                               "stoppedReason": "Essential container in task exited",
                               "containers": [container]}]}  # fmt: skip
        if operation == "GetLogEvents":
            return {"events": [{"timestamp": 0, "message": m} for m in self.log_lines]}
        if operation == "StopTask":
            return {"task": {"taskArn": TASK_ARN}}
        raise KeyError(operation)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """The fake's URL while the block runs."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                operation = self.headers["X-Amz-Target"].rsplit(".", 1)[-1]
                payload = json.dumps(fake.answer(operation, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        with serving(Handler) as url:
            yield url
