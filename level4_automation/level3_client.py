"""Level 3's admin client as level 4's loop reads it: the deployment as the controller's
:class:`~level4_automation.controller.Deployment` (green's share is 0 when its mode is off)."""

from __future__ import annotations

from level3_deployment.client import AdminClient, AdminError
from level4_automation.controller import Deployment

#: what the loop raises when level 3 refuses or cannot be reached
DeploymentError = AdminError


class Level3Client(AdminClient):
    def deployment(self) -> Deployment:
        state = self.state()
        percent = state["green_percent"] if state["mode"] != "off" else 0.0
        return Deployment(state["blue"], state["green"], float(percent))
