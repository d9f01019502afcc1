"""The `level3` change commands return once every worker serves the change, against a scripted
service (its admin API and its workers' /health answers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from click.testing import CliRunner

from taxi_mlops.cli import main
from tests.local_http import serving

NEW = {
    "generation": 7,
    "blue": 1,
    "green": 2,
    "mode": "ab",
    "green_percent": 10.0,
    "reason": "deploy v2 to green at 10% (ab)",
}
OLD = {**NEW, "generation": 6, "green": None, "mode": "off", "green_percent": 0.0}


class Service:
    """The admin API's answer to any change, and /health's answers in order (the last repeats)."""

    def __init__(
        self, health: list[tuple[str, dict]], workers: int = 2, change: dict = NEW
    ) -> None:
        self.health, self.workers, self.change = health, workers, change
        self.asked: list[str] = []  # the paths called, in order

    def answer(self, path: str) -> dict:
        self.asked.append(path)
        if path.startswith("/admin/"):
            return self.change
        seen = sum(1 for p in self.asked if p == "/health")
        worker, state = self.health[min(seen, len(self.health)) - 1]
        return {**state, "status": "ok", "worker": worker, "workers": self.workers}


@pytest.fixture
def service() -> Iterator[tuple[str, list[Service]]]:
    services: list[Service] = []

    class Handler(BaseHTTPRequestHandler):
        def reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = json.dumps(services[0].answer(self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.reply()

        def do_POST(self) -> None:
            self.reply()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, services


def deploy(url: str, *extra: str) -> tuple[int, str]:
    args = ["level3", "deploy", "--version", "2", "--url", url, *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_deploy_returns_once_the_worker_that_lags_serves_it(service) -> None:
    url, services = service
    # the worker that took the call answers three times before the other shows the change
    fake = Service([("h:1", NEW)] * 3 + [("h:2", OLD), ("h:2", NEW), ("h:9", OLD)])
    services.append(fake)
    code, out = deploy(url)
    assert code == 0, out
    assert "generation 7: blue v1, green v2 at 10% (ab)" in out
    assert fake.asked.count("/health") == 5  # not 2: h:1's run proves nothing of h:2


def test_no_wait_returns_when_the_change_is_stored(service) -> None:
    url, services = service
    fake = Service([("h:2", OLD)])
    services.append(fake)
    code, out = deploy(url, "--no-wait", "--json")
    assert code == 0, out
    assert json.loads(out)["served_everywhere"] is False
    assert fake.asked == ["/admin/deploy"]


def test_behind_a_balancer_it_waits_for_every_replicas_workers(
    service, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, services = service
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_URL", url)
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_WORKERS", "4")
    fake = Service([("a:1", NEW), ("a:2", NEW), ("b:1", NEW), ("b:2", NEW), ("b:3", OLD)])
    services.append(fake)
    result = CliRunner().invoke(main, ["level3", "deploy", "--version", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["served_everywhere"] is True
    assert fake.asked.count("/health") == 4  # each replica says it runs 2: not done at 2


def test_one_replica_by_its_own_url_is_counted_by_what_it_runs(
    service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TAXI_MLOPS_LEVEL3_WORKERS counts the workers behind TAXI_MLOPS_LEVEL3_URL, not behind
    a --url that names one replica: that one could never show 4."""
    url, services = service
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_URL", "http://balancer.example:8100")
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_WORKERS", "4")
    fake = Service([("a:1", NEW), ("a:2", NEW), ("a:3", OLD)])
    services.append(fake)
    code, out = deploy(url, "--wait-timeout", "5")
    assert code == 0, out
    assert fake.asked.count("/health") == 2


def test_a_worker_that_never_applies_it_ends_with_what_was_stored(service) -> None:
    url, services = service
    services.append(Service([("h:1", NEW), ("h:2", OLD)]))
    code, out = deploy(url, "--wait-timeout", "0.5")
    assert code == 2
    assert "generation 7 is stored, but not yet served everywhere" in out
    assert "1 worker(s) applied generation 7 in 0.5 s" in out
    assert "Traceback" not in out


def test_a_change_the_registry_did_not_record_is_reported_not_hidden(service) -> None:
    url, services = service
    unrecorded = {**NEW, "registry_error": "MlflowException: 503 from the tracking server"}
    services.append(Service([("h:1", NEW), ("h:2", NEW)], change=unrecorded))
    result = CliRunner().invoke(main, ["level3", "promote", "--url", url])
    assert result.exit_code == 0, result.output
    assert "warning: the registry's history did not record it: MlflowException: 503" in (
        result.output
    )
