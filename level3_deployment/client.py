"""The level-3 admin API as a client: the one used by the `level3` commands, level 4's loop,
the replay and `taxi-mlops compare`. A bearer token on every call; an error names the call and
what the service said. Also: waiting until every worker serves a deployment state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlencode

from shared.errors import TaxiMlopsError
from shared.services import http_json
from shared.settings import Settings, admin_token


class AdminError(TaxiMlopsError):
    """The level-3 service refused the call or could not be reached."""


@dataclass(frozen=True)
class AdminClient:
    url: str
    token: str
    timeout_s: float = 120.0
    #: how many workers serve ``url`` in all (replicas behind a balancer); None: what the
    #: answering service says it runs (see :func:`wait_until_served`)
    workers: int | None = None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            status, answer = http_json(
                method,
                f"{self.url}{path}",
                body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout_s,
            )
        except OSError as exc:
            raise AdminError(f"{self.url}: cannot reach the level-3 service ({exc})") from exc
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else str(answer)
            raise AdminError(f"level 3 {path}: HTTP {status}: {message}")
        return answer

    @classmethod
    def of(cls, url: str, settings: Settings, timeout_s: float = 120.0) -> Self:
        """The client of ``url`` with the admin token. TAXI_MLOPS_LEVEL3_WORKERS counts the
        workers behind TAXI_MLOPS_LEVEL3_URL (a balancer); any other URL (one replica, or a
        service of its own) is counted by what it says it runs."""
        url = url.rstrip("/")
        workers = settings.level3_workers if url == settings.level3_url else None
        return cls(url, admin_token(settings), timeout_s, workers)

    # ---------------------------------------------------------------------- the calls
    def status(self) -> dict[str, Any]:
        """The deployment state and its recent history."""
        answer: dict[str, Any] = self.call("GET", "/admin/state")
        return answer

    def state(self) -> dict[str, Any]:
        return dict(self.status()["state"])

    def deploy(
        self, version: int, percent: float, mode: str = "ab", reason: str | None = None
    ) -> dict[str, Any]:
        body = {"version": version, "percent": percent, "mode": mode, "reason": reason}
        return dict(self.call("POST", "/admin/deploy", body))

    def set_split(self, percent: float, mode: str = "ab") -> dict[str, Any]:
        return dict(self.call("POST", "/admin/split", {"percent": percent, "mode": mode}))

    def promote(self, reason: str | None = None) -> dict[str, Any]:
        return dict(self.call("POST", "/admin/promote", {"reason": reason} if reason else {}))

    def rollback(self, reason: str | None = None) -> dict[str, Any]:
        return dict(self.call("POST", "/admin/rollback", {"reason": reason} if reason else {}))

    def ab_report(
        self,
        min_samples: int,
        confidence: float | None = None,
        sequential: tuple[float, int] | None = None,
    ) -> dict[str, Any]:
        """The A/B report; ``sequential`` = (margin, tuned_for) asks for the always-valid
        verdict instead of Welch's."""
        query: dict[str, float | str] = {"min_samples": min_samples}
        if confidence is not None:
            query["confidence"] = confidence
        if sequential is not None:
            query |= {"test": "sequential", "margin": sequential[0], "tuned_for": sequential[1]}
        return dict(self.call("GET", f"/admin/ab-report?{urlencode(query)}"))

    def settle(self, timeout_s: float = 60.0, state: dict[str, Any] | None = None) -> None:
        """Wait until every worker serves ``state`` (by default the latest deployment state):
        workers apply a change within a poll interval, and a caller that must not race it (the
        `level3` change commands, a replay routing its next month) waits here."""
        wait_until_served(self.url, state or self.state(), timeout_s, self.workers)


def served_state(state: dict[str, Any]) -> tuple[int, int | None]:
    """What ``/health`` shows of a deployment state: its generation, and green if it has traffic."""
    return state["generation"], state["green"] if state["mode"] != "off" else None


def wait_until_served(
    url: str, state: dict[str, Any], timeout_s: float = 60.0, workers: int | None = None
) -> None:
    """Wait until every worker behind ``url`` has answered ``/health`` with ``state``.

    Which worker accepts a connection is the kernel's choice, and it is far from a coin toss
    (11 answers in a row from one of 2 idle workers, in 200 requests): a run of answers from
    the worker that took the change says nothing of the other. So each answer names its worker,
    and the wait lasts until that many distinct workers have shown ``state``; a worker that
    shows an older one is counted again only once it has caught up, and one that its gunicorn
    master no longer runs (it died; gunicorn started another) is no longer counted, so a
    replacement cannot stand in for a worker that lags. ``workers`` is how many to count, for
    replicas behind a balancer (their total); by default, what the service says it runs."""
    expected = served_state(state)
    caught_up: dict[str, str | None] = {}  # worker: its master ("server")
    deadline = time.monotonic() + timeout_s
    while True:
        health, current = _health_answer(url), False
        if isinstance(health, dict):
            current = served_state(health) == expected
            if current:
                caught_up[health["worker"]] = health.get("server")
            else:
                caught_up.pop(health["worker"], None)
            _forget_gone(caught_up, health)
            if len(caught_up) >= (workers or health["workers"]):
                return
        if time.monotonic() > deadline:
            raise AdminError(
                f"{url}: {len(caught_up)} worker(s) applied generation {expected[0]} in "
                f"{timeout_s:g} s; the last /health answer: {health!r:.300}"
            )
        time.sleep(0.02 if current else 0.2)


def _forget_gone(caught_up: dict[str, str | None], health: dict[str, Any]) -> None:
    """Drop the counted workers of this answer's master that it no longer runs (an answer
    without the list, from a service that cannot read it, drops none)."""
    server, siblings = health.get("server"), health.get("siblings")
    if server is None or not isinstance(siblings, list):
        return
    for worker in [w for w, s in caught_up.items() if s == server and w not in siblings]:
        del caught_up[worker]


def _health_answer(url: str) -> dict[str, Any] | str:
    """``/health``'s answer when it names its worker; otherwise what went wrong, as text."""
    try:
        _, health = http_json("GET", f"{url}/health", timeout=30)
    except OSError as exc:  # a replica restarting: the balancer or the port refuses for now
        return f"unreachable ({exc})"
    if isinstance(health, dict) and {"worker", "workers"} <= health.keys():
        return health
    return f"an answer that names no worker: {health!r:.200}"
