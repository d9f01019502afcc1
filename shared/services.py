"""Start, health-check and stop a project service as a child process (demo, tests, benchmarks).

Services bind 127.0.0.1 on a free port and are stopped by PID: SIGTERM, then SIGKILL for the
whole process group if they do not exit in time, so nothing is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import TaxiMlopsError


class ServiceError(TaxiMlopsError):
    """A service did not become healthy."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or text). Never raises on 4xx/5xx."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url}: only http(s) URLs are allowed")
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - scheme checked above
    if data is not None and "Content-Type" not in request.headers:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(
    command: list[str],
    url: str,
    log_path: Path,
    *,
    health_path: str = "/health",
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
) -> ServiceProcess:
    """Run ``command`` in its own process group and wait until ``url + health_path`` answers 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own CLI, no shell
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    log.close()
    service = ServiceProcess(process, url, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ServiceError(f"{command[0]} exited with {process.returncode}:\n{tail}")
        try:
            status, _ = http_json("GET", url + health_path, timeout=2)
            if status == 200:
                return service
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    service.stop()
    raise ServiceError(f"{url}{health_path} not healthy after {timeout_s:.0f} s; see {log_path}")
