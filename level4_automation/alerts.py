"""Alerts: always to the log; to a webhook (JSON POST, Slack-compatible ``text``) when set.

Delivering an alert must never break the loop: a webhook that is down is logged and reported
in the decision's audit record, and the loop goes on.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SEVERITY = {
    "alert": "warning",
    "retrain_blocked": "critical",
    "gate_failed": "warning",
    "rollback": "warning",
    "promote": "info",
    "canary_deployed": "info",
    "retrain_failed": "critical",
}


@dataclass(frozen=True)
class Alerter:
    webhook_url: str | None = None
    timeout_s: float = 5.0

    def send(self, action: str, rule: str, reason: str, details: dict[str, Any]) -> str:
        """Returns what happened to the alert: ``logged``, ``delivered`` or ``failed: ...``."""
        severity = SEVERITY.get(action, "info")
        level = logging.WARNING if severity != "info" else logging.INFO
        logger.log(level, "level-4 %s [%s]: %s", action, rule, reason)
        if not self.webhook_url:
            return "logged"
        if not self.webhook_url.startswith(("http://", "https://")):
            return f"failed: {self.webhook_url!r} is not an http(s) URL"
        payload = {
            "text": f"[taxi-mlops level 4] {severity}: {action} ({rule}): {reason}",
            "severity": severity,
            "action": action,
            "rule": rule,
            "reason": reason,
            "details": details,
        }
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            self.webhook_url,
            data=json.dumps(payload, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:
            logger.error("alert webhook %s unreachable: %s", self.webhook_url, exc)
            return f"failed: {exc}"
        if status >= 300:
            logger.error("alert webhook %s answered HTTP %d", self.webhook_url, status)
            return f"failed: HTTP {status}"
        return "delivered"
