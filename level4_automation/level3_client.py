"""The level-3 admin API, as level 4 uses it (bearer token; errors name the call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from level4_automation.controller import Deployment
from shared.errors import TaxiMlopsError
from taxi_mlops.services import http_json


class DeploymentError(TaxiMlopsError):
    """The level-3 service refused or could not be reached."""


@dataclass(frozen=True)
class Level3Client:
    url: str
    token: str
    timeout_s: float = 120.0

    def _call(self, method: str, path: str, body: dict | None = None) -> Any:
        try:
            status, answer = http_json(
                method,
                f"{self.url}{path}",
                body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.timeout_s,
            )
        except OSError as exc:
            raise DeploymentError(f"{self.url}: cannot reach the level-3 service ({exc})") from exc
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else str(answer)
            raise DeploymentError(f"level 3 {path}: HTTP {status}: {message}")
        return answer

    def deployment(self) -> Deployment:
        state = self._call("GET", "/admin/state")["state"]
        percent = state["green_percent"] if state["mode"] != "off" else 0.0
        return Deployment(state["blue"], state["green"], float(percent))

    def deploy(self, version: int, percent: float, mode: str, reason: str) -> dict:
        return self._call(
            "POST",
            "/admin/deploy",
            {"version": version, "percent": percent, "mode": mode, "reason": reason},
        )

    def promote(self, reason: str) -> dict:
        return self._call("POST", "/admin/promote", {"reason": reason})

    def rollback(self, reason: str) -> dict:
        return self._call("POST", "/admin/rollback", {"reason": reason})

    def ab_report(self, min_samples: int, confidence: float = 0.95) -> dict:
        return self._call(
            "GET", f"/admin/ab-report?min_samples={min_samples}&confidence={confidence}"
        )
