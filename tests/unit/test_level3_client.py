"""Waiting until every worker serves a deployment state, against a scripted /health."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from level3_deployment.client import AdminError, wait_until_served
from tests.local_http import serving

NEW = {"generation": 7, "green": None, "mode": "off"}
OLD = {"generation": 6, "green": 2, "mode": "ab"}


def answer(worker: str, state: dict, workers: int = 2) -> dict:
    return {**state, "status": "ok", "worker": worker, "workers": workers}


class Script:
    """/health's answers in order (the last one repeats), and how many were given."""

    def __init__(self, answers: list) -> None:
        self.answers, self.given = answers, 0

    def next(self) -> object:
        self.given += 1
        return self.answers[min(self.given, len(self.answers)) - 1]


@pytest.fixture
def health() -> Iterator[tuple[str, list[Script]]]:
    scripts: list[Script] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = scripts[0].next()
            text = body if isinstance(body, str) else json.dumps(body)
            self.send_response(200 if isinstance(body, dict) else 502)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url, scripts


def test_a_long_run_from_the_worker_that_took_the_change_does_not_end_the_wait(health) -> None:
    url, scripts = health
    # the kernel handed 20 connections in a row to worker a; b still serves the old state
    answers = [answer("h:1", NEW)] * 20 + [answer("h:2", OLD)] + [answer("h:1", NEW)] * 5
    script = Script([*answers, answer("h:2", NEW), answer("h:9", OLD)])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10)
    assert script.given == len(answers) + 1  # it returned on b's first answer of the new state


def test_a_worker_seen_behind_again_is_counted_only_once_it_has_caught_up(health) -> None:
    url, scripts = health
    # a replica's worker restarted and answers from an older state (then catches up)
    answers = [answer("h:1", NEW), answer("h:2", OLD), answer("h:1", NEW)]
    script = Script([*answers, answer("h:2", NEW)])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10)
    assert script.given == 4


def test_replicas_behind_a_balancer_are_counted_as_the_caller_says(health) -> None:
    url, scripts = health
    # each replica says it runs 2 workers; behind nginx there are 2 x 2
    names = ["a:1", "b:1", "a:1", "a:2", "b:1", "b:7"]
    script = Script([answer(name, NEW) for name in names])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10, workers=4)
    assert script.given == len(names)


def test_a_worker_that_never_catches_up_times_out_with_what_it_last_said(health) -> None:
    url, scripts = health
    scripts.append(Script([answer("h:1", NEW), answer("h:2", OLD)]))
    with pytest.raises(AdminError, match=r"1 worker\(s\) applied generation 7 in 0.5 s.*'h:2'"):
        wait_until_served(url, NEW, timeout_s=0.5)


def test_answers_that_name_no_worker_are_waited_through_then_reported(health) -> None:
    url, scripts = health
    # a balancer's error page while a replica restarts, then the workers
    script = Script(["<html>502 Bad Gateway</html>", answer("h:1", NEW), answer("h:2", NEW)])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10)
    assert script.given == 3
    scripts[0] = Script([{"status": "ok", **NEW}])  # a service too old to name its worker
    with pytest.raises(AdminError, match="names no worker"):
        wait_until_served(url, NEW, timeout_s=0.3)


def test_a_worker_that_died_is_not_counted_in_place_of_one_that_lags(health) -> None:
    url, scripts = health

    def of(worker: str, state: dict, siblings: list[str], server: str = "h:100") -> dict:
        return {**answer(worker, state), "server": server, "siblings": siblings}

    # h:1 applies the change and dies; gunicorn's new worker h:3 boots into the new state
    # while h:2 still serves the old one: two workers have shown it, but one is gone
    answers = [
        of("h:1", NEW, ["h:1", "h:2"]),
        of("h:3", NEW, ["h:2", "h:3"]),
        of("h:2", OLD, ["h:2", "h:3"]),
    ]
    script = Script([*answers, of("h:2", NEW, ["h:2", "h:3"])])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10)
    assert script.given == 4  # not 2: it waited for h:2


def test_another_master_on_the_same_host_does_not_forget_the_first_ones_workers(health) -> None:
    url, scripts = health
    # two replicas on one host behind a balancer: each master lists only its own workers
    answers = [
        {**answer(worker, NEW), "server": server, "siblings": siblings}
        for worker, server, siblings in [
            ("h:1", "h:100", ["h:1", "h:2"]),
            ("h:5", "h:200", ["h:5", "h:6"]),
            ("h:2", "h:100", ["h:1", "h:2"]),
            ("h:6", "h:200", ["h:5", "h:6"]),
        ]
    ]
    script = Script([*answers, answer("h:9", OLD)])
    scripts.append(script)
    wait_until_served(url, NEW, timeout_s=10, workers=4)
    assert script.given == 4
