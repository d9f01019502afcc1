"""Alerts reach a webhook (a real HTTP receiver on 127.0.0.1) and never break the loop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from level4_automation.alerts import Alerter
from shared.services import free_port
from tests.local_http import serving


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            status = 500 if self.path == "/broken" else 200
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, received


def test_an_alert_is_delivered_as_json(receiver) -> None:
    url, received = receiver
    status = Alerter(f"{url}/hook").send("retrain_blocked", "data_quality", "bad month", {"x": 1})
    assert status == "delivered"
    (payload,) = received
    assert payload["severity"] == "critical" and payload["rule"] == "data_quality"
    assert "bad month" in payload["text"] and payload["details"] == {"x": 1}


def test_a_failing_webhook_is_reported_not_raised(receiver, caplog) -> None:
    url, _ = receiver
    assert Alerter(f"{url}/broken").send("alert", "r", "m", {}) == "failed: HTTP 500"
    closed = Alerter(f"http://127.0.0.1:{free_port()}/", timeout_s=1)
    assert closed.send("alert", "r", "m", {}).startswith("failed:")
    assert Alerter("ftp://x").send("alert", "r", "m", {}).startswith("failed:")
    assert Alerter().send("alert", "r", "m", {}) == "logged"
    assert "level-4 alert [r]: m" in caplog.text
