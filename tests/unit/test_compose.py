"""docker-compose.yml stays in step with the code, though no Docker engine runs it here: every
platform command parses with the CLI, every variable is a setting, secrets have no defaults,
and nginx's config is the stack's renderer's output for the compose services. (The
compose-spec schema check is in tests/lint.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings, env_var
from taxi_mlops.stack import nginx
from tests.cli_parsing import assert_cli_accepts

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PLATFORM = [name for name, s in SERVICES.items() if s.get("build") == "."]
#: the variables a platform container reads that are not this project's settings
FOREIGN = re.compile(r"^(MLFLOW_|PREFECT_|AWS_|DO_NOT_TRACK$)")


def test_the_platform_image_runs_every_project_service() -> None:
    assert set(PLATFORM) == {
        "mlflow", "deploy-flow", "worker", "first-champion", "level3-a", "level3-b", "monitor",
    }  # fmt: skip


@pytest.mark.parametrize("service", [s for s in PLATFORM if "entrypoint" not in SERVICES[s]])
def test_platform_commands_parse_with_the_cli(service: str) -> None:
    assert_cli_accepts(SERVICES[service]["command"])


def test_the_worker_serves_the_pool_the_flow_is_deployed_to() -> None:
    worker = SERVICES["worker"]
    assert worker["entrypoint"] == ["prefect"]
    deployed = SERVICES["deploy-flow"]["command"]
    pool = deployed[deployed.index("--pool") + 1]
    assert worker["command"][:2] == ["worker", "start"]
    assert worker["command"][worker["command"].index("--pool") + 1] == pool
    assert "--on-worker" in SERVICES["first-champion"]["command"]


@pytest.mark.parametrize("service", PLATFORM)
def test_every_project_variable_is_a_setting(service: str) -> None:
    known = {env_var(field) for field in Settings.model_fields}
    for name in SERVICES[service]["environment"]:
        assert name in known or FOREIGN.match(name), f"{service}: {name} is not a setting"


def test_secrets_are_required_not_defaulted() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in (
        "TAXI_MLOPS_DB_PASSWORD",
        "TAXI_MLOPS_ADMIN_TOKEN",
        "TAXI_MLOPS_FEEDBACK_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert any(u.startswith(":?") for u in uses), f"{secret} must fail when unset"
        assert not any(u.startswith((":-", "-")) for u in uses), f"{secret} has a default"


def test_nginx_conf_is_the_renderers_output_for_the_compose_replicas() -> None:
    checked_in = (ROOT / "infra" / "compose" / "nginx.conf").read_text()
    assert checked_in == nginx.compose_config(), (
        "regenerate: python -m taxi_mlops.stack.nginx > infra/compose/nginx.conf"
    )
    for name in nginx.COMPOSE_REPLICAS:
        command = SERVICES[name]["command"]
        assert command[command.index("--port") + 1] == str(nginx.COMPOSE_PORT)
        assert f"server {name}:{nginx.COMPOSE_PORT}" in checked_in
    assert SERVICES["nginx"]["ports"] == [f"127.0.0.1:{nginx.COMPOSE_PORT}:{nginx.COMPOSE_PORT}"]


def test_published_ports_are_loopback_only() -> None:
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} to every host"


def test_no_volume_is_shared_between_containers() -> None:
    """As in the stack and in AWS: every container has a home of its own; what they share goes
    through URLs (PostgreSQL, S3, MLflow, Prefect, nginx). Read-only configuration files are
    not state."""
    owners: dict[str, list[str]] = {}
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source, _, rest = str(mount).partition(":")
            if rest.endswith(":ro"):
                continue
            owners.setdefault(source, []).append(name)
    shared = {source: names for source, names in owners.items() if len(names) > 1}
    assert shared == {}


def test_level4_runs_on_a_schedule_against_the_replicas_behind_nginx() -> None:
    monitor = SERVICES["monitor"]
    assert monitor["command"][:2] == ["level4", "schedule"]
    env = COMPOSE["x-platform"]["environment"]
    assert env["TAXI_MLOPS_LEVEL3_URL"] == f"http://nginx:{nginx.COMPOSE_PORT}"
    assert env["TAXI_MLOPS_STATE_DB_URL"].startswith("postgresql+psycopg2://")


def test_clients_wait_for_every_worker_of_every_replica() -> None:
    """A `level3` change through nginx is done once TAXI_MLOPS_LEVEL3_WORKERS workers serve it:
    the replicas' workers in all, or a change would count done while one replica lags."""
    replicas = [s for s in SERVICES.values() if s.get("command", [])[:2] == ["level3", "serve"]]
    workers = [int(s["command"][s["command"].index("--workers") + 1]) for s in replicas]
    env = COMPOSE["x-platform"]["environment"]
    assert len(replicas) == 2
    assert int(env["TAXI_MLOPS_LEVEL3_WORKERS"]) == sum(workers)
