"""The level-3 admin API as a client: the one used by the `level3` commands, level 4's loop,
the replay and `taxi-mlops compare`. A bearer token on every call; an error names the call and
what the service said. Also: waiting until every worker serves a deployment state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.errors import TaxiMlopsError
from shared.services import http_json


class AdminError(TaxiMlopsError):
    """The level-3 service refused the call or could not be reached."""


@dataclass(frozen=True)
class AdminClient:
    url: str
    token: str
    timeout_s: float = 120.0

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

    def settle(self, timeout_s: float = 60.0, in_a_row: int = 12) -> None:
        """Wait until every worker serves the latest deployment state (workers apply a change
        within a poll interval: a caller that must not race it, such as a replay routing its
        next month, waits here)."""
        wait_until_served(self.url, self.state(), timeout_s, in_a_row)


def served_state(state: dict[str, Any]) -> tuple[int, int | None]:
    """What ``/health`` shows of a deployment state: its generation, and green if it has traffic."""
    return state["generation"], state["green"] if state["mode"] != "off" else None


def wait_until_served(
    url: str, state: dict[str, Any], timeout_s: float = 60.0, in_a_row: int = 12
) -> None:
    """Wait until ``in_a_row`` health answers in a row show ``state``. Each answer comes from
    some worker: 12 in a row see both of a service's 2 workers with certainty ~1 - 2**-12; more
    workers (replicas behind a balancer) need more."""
    expected = served_state(state)
    streak, deadline = 0, time.monotonic() + timeout_s
    while streak < in_a_row:
        if time.monotonic() > deadline:
            raise AdminError(f"{url}: workers did not apply generation {expected[0]} in time")
        _, health = http_json("GET", f"{url}/health", timeout=30)
        current = served_state(health) if isinstance(health, dict) else None
        streak = streak + 1 if current == expected else 0
        if current != expected:
            time.sleep(0.2)
