"""The AWS environment, read as HCL (the AWS provider cannot be downloaded here, so `validate`
and `plan` run in GitHub Actions): what must hold is checked on the parsed configuration."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.cli_parsing import assert_cli_accepts

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / "infra" / "envs" / "aws"
#: the remote-state bootstrap (S3 bucket and DynamoDB lock table for AWS's backend)
AWS_STATE = ROOT / "infra" / "envs" / "aws-state"
ENVS = [AWS, AWS_STATE]
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


@functools.cache
def _parse(folder: Path) -> tuple[dict[str, Any], ...]:
    # python-hcl2 takes ~0.5 s a folder, and most tests read several views of the same files
    return tuple(
        hcl2.load(path.open(), serialization_options=OPTIONS)
        for path in sorted(folder.glob("*.tf"))
    )


def parsed(folder: Path = AWS) -> list[dict[str, Any]]:
    """The folder's .tf files, parsed (a copy: a test may change what it is given)."""
    return copy.deepcopy(list(_parse(folder)))


def blocks(kind: str, type_name: str, folder: Path = AWS) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in parsed(folder):
        for item in doc.get(kind, []):
            found.update(item.get(type_name, {}))
    return found


def local_values(folder: Path = AWS) -> dict[str, Any]:
    return {k: v for d in parsed(folder) for item in d.get("locals", []) for k, v in item.items()}


def modules() -> dict[str, Any]:
    return {k: v for d in parsed() for item in d.get("module", []) for k, v in item.items()}


def variables(folder: Path = AWS) -> dict[str, Any]:
    return {k: v for d in parsed(folder) for item in d.get("variable", []) for k, v in item.items()}


def test_the_listener_forwards_to_the_variants_of_the_split_mode() -> None:
    (listener,) = [x for x in blocks("resource", "aws_lb_listener").values() if x["port"] == 443]
    (action,) = listener["default_action"]
    (forward,) = action["forward"]
    (dynamic,) = forward["dynamic"]
    assert dynamic["target_group"]["for_each"] == "${local.variants}"
    (content,) = dynamic["target_group"]["content"]
    assert content["weight"] == "${target_group.value}"
    found = local_values()
    # app: the one level-3 target group; alb: blue and green by weight
    assert found["variants"] == (
        "${local.app_split ? {level3 = 100} : {blue = local.blue_weight, green = "
        "local.green_weight}}"
    )
    assert found["blue_weight"] == "${100 - local.green_weight}"
    # the variable, unless it would send traffic to a green service that runs no task
    assert found["green_weight"].endswith(": var.green_weight}")
    assert "var.green_version == 0" in found["green_weight"]


# ----------------------------------------------- one topology: the stack's, in the cloud


def test_by_default_one_unpinned_level3_service_shares_the_state_database() -> None:
    assert variables()["split_mode"]["default"] == "app"
    level3 = modules()["level3"]
    assert level3["count"] == "${local.app_split ? 1 : 0}"
    assert level3["command"] == "${local.serve_command}"
    command = local_values()["serve_command"]
    assert command[:2] == ["level3", "serve"] and "--pin-version" not in command
    assert level3["desired_count"] == "${local.running && var.serve ? var.service_count : 0}"
    assert level3["environment"] == "${local.state_env}"
    assert "local.state_secrets" in level3["secrets"]
    assert level3["service_registry_arn"] == (
        '${aws_service_discovery_service.internal["level3"].arn}'
    )
    found = local_values()
    assert "TAXI_MLOPS_STATE_DB_URL = local.state_db_url" in found["state_env"]
    # the user and password straight from the RDS-managed secret, never in a task definition
    assert found["state_secrets"] == {
        "TAXI_MLOPS_STATE_DB_USER": "${local.rds_secret}:username::",
        "TAXI_MLOPS_STATE_DB_PASSWORD": "${local.rds_secret}:password::",
    }
    assert found["state_db_url"].startswith("postgresql+psycopg2://${aws_db_instance.mlflow.")
    assert "@" not in found["state_db_url"]  # no credentials in the plain variable


def test_the_alb_split_remains_an_option_with_pinned_services() -> None:
    model = modules()["model"]
    assert model["for_each"] == (
        "${local.app_split ? {} : {blue = var.blue_version, green = var.green_version}}"
    )
    assert "--pin-version" in model["command"] and "--pin-variant" in model["command"]
    # pinned services log to the shared state database too
    assert model["environment"] == "${local.state_env}"


def test_level4_runs_on_a_schedule_by_default_against_the_internal_address() -> None:
    assert variables()["enable_monitoring"]["default"] is True
    (rule,) = blocks("resource", "aws_cloudwatch_event_rule").values()
    assert rule["is_enabled"] == "${local.monitoring_enabled}"
    found = local_values()
    assert found["monitoring_enabled"] == (
        "${var.enable_monitoring && local.app_split && local.running && var.serve}"
    )
    monitoring = modules()["monitoring"]
    assert monitoring["run_service"] is False
    command = monitoring["command"]
    assert command[:2] == ["level4", "monitor"]
    assert command[command.index("--url") + 1] == "${local.level3_internal_url}"
    assert found["level3_internal_url"] == ("http://level3.${local.internal}:${local.level3_port}")
    assert monitoring["environment"] == "${local.state_env}"
    assert "local.state_secrets" in monitoring["secrets"]
    assert 'aws_secretsmanager_secret.token["admin"].arn' in monitoring["secrets"]
    (target,) = blocks("resource", "aws_cloudwatch_event_target").values()
    assert target["ecs_target"][0]["task_definition_arn"] == (
        "${module.monitoring.task_definition_arn}"
    )


def test_training_runs_as_a_task_the_ci_role_may_start_and_watch() -> None:
    train = modules()["train"]
    assert train["run_service"] is False
    assert train["command"] == '${concat(["level2", "train"], var.train_args)}'
    assert train["environment"] == "${local.common_env}"  # the registry; artifacts via MLflow
    statements = {
        s["sid"]: s for s in blocks("data", "aws_iam_policy_document")["github_ci"]["statement"]
    }
    assert statements["RunTraining"]["actions"] == ["ecs:RunTask"]
    assert "${module.train.family}:*" in statements["RunTraining"]["resources"][0]
    assert statements["PassTrainingRoles"]["resources"] == [
        "${aws_iam_role.execution.arn}", "${aws_iam_role.train.arn}"
    ]  # fmt: skip
    output = {k: v for d in parsed() for i in d.get("output", []) for k, v in i.items()}
    described = output["train_task"]["value"]
    for key in ("cluster", "taskDefinition", "container", "subnets", "securityGroups",
                "logGroup", "logStreamPrefix"):  # fmt: skip
        assert f"{key} =" in described or f"{key}=" in described, key


# ------------------------------------------------ defects found by reading (issue 17)


def test_no_security_group_mixes_inline_rules_with_rule_resources() -> None:
    """Inline `ingress`/`egress` beside rule resources for the same group make every apply
    remove what the other added: every rule is its own resource."""
    for name, group in blocks("resource", "aws_security_group").items():
        assert "ingress" not in group and "egress" not in group, name
    assert blocks("resource", "aws_security_group_rule") == {}
    rules = {
        **blocks("resource", "aws_vpc_security_group_ingress_rule"),
        **blocks("resource", "aws_vpc_security_group_egress_rule"),
    }
    groups = {r["security_group_id"] for r in rules.values()}
    assert groups == {f"${{aws_security_group.{g}.id}}" for g in ("alb", "services", "db")}


def test_the_github_oidc_provider_is_read_unless_asked_to_create_it() -> None:
    assert variables()["create_github_oidc_provider"]["default"] is False
    (created,) = blocks("resource", "aws_iam_openid_connect_provider").values()
    assert created["count"] == "${var.create_github_oidc_provider ? 1 : 0}"
    (existing,) = blocks("data", "aws_iam_openid_connect_provider").values()
    assert existing["count"] == "${var.create_github_oidc_provider ? 0 : 1}"
    assert existing["url"] == created["url"] == "https://token.actions.githubusercontent.com"
    (trust,) = blocks("data", "aws_iam_policy_document")["github_trust"]["statement"]
    assert trust["principals"][0]["identifiers"] == ["${local.github_oidc_arn}"]


def test_stickiness_is_off_unless_asked_and_green_keeps_its_tasks_while_it_has_a_version() -> None:
    """A client stuck to a target group keeps going there after its weight is 0: with an
    hour of stickiness, a promotion that scaled green to 0 tasks gave stuck clients 503s."""
    assert variables()["alb_stickiness_seconds"]["default"] == 0
    (listener,) = [x for x in blocks("resource", "aws_lb_listener").values() if x["port"] == 443]
    (stickiness,) = listener["default_action"][0]["forward"][0]["stickiness"]
    assert stickiness["enabled"] == "${var.alb_stickiness_seconds > 0}"
    # green's tasks follow its version, never its weight
    count = modules()["model"]["desired_count"]
    assert "each.value == 0" in count and "weight" not in count


def test_the_alarm_topic_key_lets_cloudwatch_publish() -> None:
    (topic,) = blocks("resource", "aws_sns_topic").values()
    assert topic["kms_master_key_id"] == "${aws_kms_key.main.id}"
    statements = blocks("data", "aws_iam_policy_document")["kms"]["statement"]
    allowed = [
        s for s in statements
        if s["principals"][0]["identifiers"] == ["cloudwatch.amazonaws.com"]
    ]  # fmt: skip
    assert allowed, "CloudWatch alarms cannot use the topic's key: notifications are dropped"
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(allowed[0]["actions"])


def test_every_token_a_task_reads_has_a_generated_value() -> None:
    """A Secrets Manager secret with no value stops ECS from starting the task at all."""
    secrets = blocks("resource", "aws_secretsmanager_secret")
    versions = blocks("resource", "aws_secretsmanager_secret_version")
    assert set(secrets) == set(versions) == {"token"}
    (version,) = versions.values()
    assert version["for_each"] == secrets["token"]["for_each"] == "${random_password.token}"
    assert version["secret_string"] == "${each.value.result}"
    assert version["lifecycle"][0]["ignore_changes"] == ["secret_string"]  # rotation stays
    (generated,) = blocks("resource", "random_password").values()
    assert generated["for_each"] == '${toset(["admin", "feedback"])}'
    assert generated["length"] >= 32  # TAXI_MLOPS_ENV=prod refuses shorter tokens
    referenced = re.findall(r"aws_secretsmanager_secret\.(\w+)", (AWS / "services.tf").read_text())
    assert set(referenced) == {"token"}


def test_the_home_and_tmp_are_writable_volumes_the_image_owns() -> None:
    """A non-root task on a read-only root filesystem writes only to its volumes; a Fargate
    bind mount is root's unless the image declares the path as a VOLUME it owns."""
    module_locals = local_values(MODULES / "ecs_service")
    writable = set(module_locals["writable"].values())
    assert "${local.home}" in writable and "/tmp" in writable
    home = module_locals["home"]
    (task,) = blocks("resource", "aws_ecs_task_definition", MODULES / "ecs_service").values()
    definition = task["container_definitions"]
    assert "readonlyRootFilesystem = true" in definition and 'user = "10001"' in definition
    assert "TAXI_MLOPS_HOME = local.home" in definition
    assert "containerPath = path" in definition
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'VOLUME ["{home}", "/tmp"]' in dockerfile
    assert "--uid 10001 app" in dockerfile and f"chown app {home}" in dockerfile
    assert f"TAXI_MLOPS_HOME={home}" in dockerfile
    assert "TAXI_MLOPS_HOME" not in json_text(modules())  # no task moves it off its volume


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)


def test_the_url_output_is_the_name_the_certificate_covers() -> None:
    output = {k: v for d in parsed() for i in d.get("output", []) for k, v in i.items()}
    assert output["url"]["value"] == "${local.level3_url}"
    assert local_values()["level3_url"] == "https://${var.domain_name}"
    assert "dns_name" not in output["url"]["value"]
    (record,) = blocks("resource", "aws_route53_record").values()
    assert record["name"] == "${var.domain_name}"
    assert record["count"] == '${var.route53_zone_id == "" ? 0 : 1}'


def test_the_admin_api_answers_only_the_admin_networks_through_the_load_balancer() -> None:
    rules = blocks("resource", "aws_lb_listener_rule")
    allowed, refused = rules["admin_allowed"], rules["admin_refused"]
    # (priority 10, plus a term that fails the plan when the networks do not fit in the rule)
    assert allowed["priority"] == "${10 + local.admin_cidrs_fit}" and refused["priority"] == 11
    assert 'length(local.admin_cidrs) > 3 ? tonumber("' in local_values()["admin_cidrs_fit"]
    conditions = {k: v for c in allowed["condition"] for k, v in c.items()}
    assert conditions["path_pattern"][0]["values"] == ["/admin/*"]
    assert conditions["source_ip"][0]["values"] == "${local.admin_cidrs}"
    assert refused["action"][0]["fixed_response"][0]["status_code"] == "403"


def env_id(folder: Path) -> str:
    return folder.name


@pytest.mark.parametrize("env", ENVS, ids=env_id)
def test_buckets_block_public_access(env: Path) -> None:
    buckets = blocks("resource", "aws_s3_bucket", env)
    assert buckets
    guards = blocks("resource", "aws_s3_bucket_public_access_block", env)
    guarded = {g["bucket"].split(".")[1] for g in guards.values()}
    assert set(buckets) <= guarded
    for guard in guards.values():
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ):
            assert guard[flag] is True


def statements() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for env in ENVS:
        for name, doc in blocks("data", "aws_iam_policy_document", env).items():
            for statement in doc.get("statement", []):
                out.append((env.name, name, statement))
    return out


#: (policy document, statement sid) allowed to name "*": actions without resource-level
#: permissions, and the key policy, where "*" means the key itself.
STAR_ALLOWED = {
    ("execution", "EcrToken"),
    ("github_ci", "EcrToken"),
    ("kms", "AccountAdministers"),
    ("kms", "CloudWatchLogsUse"),
    ("kms", "CloudWatchAlarmsPublish"),
}


@pytest.mark.parametrize("policy", sorted({f"{e}:{n}" for e, n, _ in statements()}))
def test_no_wildcard_action_and_no_star_resource_without_a_reason(policy: str) -> None:
    for env, name, statement in statements():
        if f"{env}:{name}" != policy or statement.get("effect") == "Deny":
            continue
        actions = statement.get("actions", [])
        if (name, statement.get("sid")) not in {("kms", "AccountAdministers")}:
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
        if "*" in statement.get("resources", []):
            assert (name, statement.get("sid")) in STAR_ALLOWED, (name, statement)


# ------------------------------------------------ references (what `terraform validate` checks)

MODULES = ROOT / "infra" / "modules"
REFERENCE = re.compile(
    r"(?<![\w.\-/])(var|local|module|data\.[a-z0-9_]+|aws_[a-z0-9_]+)\.([A-Za-z_][\w-]*)"
    r"(?:(?:\[[^\]]*\])?\.([A-Za-z_]\w*))?"
)
#: iteration and meta names that look like references
LOCAL_NAMES = {"each", "count", "path", "self", "terraform"}


def declared(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"var": set(), "local": set(), "module": set(), "output": set()}
    for doc in docs:
        for item in doc.get("variable", []):
            out["var"].update(item)
        for item in doc.get("output", []):
            out["output"].update(item)
        for item in doc.get("locals", []):
            out["local"].update(item)
        for item in doc.get("module", []):
            out["module"].update(item)
        for kind, prefix in (("resource", ""), ("data", "data.")):
            for item in doc.get(kind, []):
                for type_name, named in item.items():
                    out.setdefault(prefix + type_name, set()).update(named)
    return out


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def references(docs: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    found = set()
    for text in strings(docs):
        for expression in re.findall(r"\$\{(.*?)\}(?!\})", text, flags=re.S) or []:
            for kind, name, attribute in REFERENCE.findall(expression):
                found.add((kind, name, attribute or None))
    return found


@pytest.mark.parametrize(
    "folder", [*ENVS, MODULES / "ecs_service"], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_reference_is_declared(folder: Path) -> None:
    docs = parsed(folder)
    names = declared(docs)
    missing = sorted(
        f"{kind}.{name}"
        for kind, name, _ in references(docs)
        if name not in names.get(kind, set()) and kind not in LOCAL_NAMES
    )
    assert missing == []


def test_module_calls_match_the_module_interface() -> None:
    docs = parsed(AWS)
    calls = {k: v for doc in docs for item in doc.get("module", []) for k, v in item.items()}
    for name, call in calls.items():
        module_docs = parsed((AWS / call["source"]).resolve())
        interface = declared(module_docs)
        variables = {k: v for d in module_docs for i in d.get("variable", []) for k, v in i.items()}
        meta = {"source", "for_each", "count", "providers", "depends_on", "version"}
        meta.update(("__inline_comments__", "__comments__"))  # python-hcl2's, not Terraform's
        given = set(call) - meta
        assert given - interface["var"] == set(), f"module.{name}: unknown inputs"
        required = {k for k, v in variables.items() if "default" not in v}
        assert required - given == set(), f"module.{name}: required inputs missing"
    # (`for m in module.x : m.attr` names no attribute: not checked here)
    used = {(n, a) for kind, n, a in references(docs) if kind == "module" and a is not None}
    for name, attribute in used:
        outputs = declared(parsed((AWS / calls[name]["source"]).resolve()))["output"]
        assert attribute in outputs, f"module.{name}.{attribute} is not an output"


def test_the_state_store_is_versioned_encrypted_and_locked() -> None:
    (versioning,) = blocks("resource", "aws_s3_bucket_versioning", AWS_STATE).values()
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    (sse,) = blocks(
        "resource", "aws_s3_bucket_server_side_encryption_configuration", AWS_STATE
    ).values()
    assert (
        sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    )
    (lock,) = blocks("resource", "aws_dynamodb_table", AWS_STATE).values()
    assert lock["hash_key"] == "LockID"  # the key Terraform's S3 backend writes
    backend = parsed()[[p.name for p in sorted(AWS.glob("*.tf"))].index("versions.tf")]
    (s3,) = [b["s3"] for t in backend["terraform"] for b in t.get("backend", [])]
    assert s3["encrypt"] is True
    example = (AWS / "backend.hcl.example").read_text()
    for key in ("bucket", "region", "dynamodb_table", "kms_key_id"):
        assert f"\n{key} " in example
    outputs = {k: v for d in parsed(AWS_STATE) for i in d.get("output", []) for k, v in i.items()}
    assert all(
        f"{key} " in outputs["backend_config"]["value"] for key in ("bucket", "dynamodb_table")
    )


# ------------------------------------------------- the image and the commands the tasks run

#: sample values for the interpolations in task commands
SAMPLES = {
    "${local.level3_internal_url}": "http://level3.prod.taxi-mlops.internal:8100",
    "${tostring(local.level3_port)}": "8100",
}


def entrypoint() -> list[str]:
    import json

    (line,) = re.findall(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Dockerfile").read_text(), flags=re.M)
    return json.loads(line)


def task_commands() -> dict[str, list[str]]:
    """What each ECS task runs: the image's entrypoint, then the task's command."""
    found = local_values()
    commands = {
        "serve": found["serve_command"],
        "mlflow": modules()["mlflow"]["command"],
        "monitoring": modules()["monitoring"]["command"],
        "train": ["level2", "train", *variables()["train_args"]["default"]],
        "pinned": [*found["serve_command"], "--pin-version", "3", "--pin-variant", "green"],
    }
    return {
        name: entrypoint() + [SAMPLES.get(part, part) for part in command]
        for name, command in commands.items()
    }


@pytest.mark.parametrize("task", ["serve", "mlflow", "monitoring", "train", "pinned"])
def test_task_commands_parse_with_the_cli(task: str) -> None:
    """Each ECS task's command, after the image's entrypoint, is accepted by the CLI: a command
    that repeated the entrypoint (`taxi-mlops taxi-mlops ...`) or an option that was renamed
    fails here, not in a cloud deployment."""
    argv = task_commands()[task]
    assert argv[0] == "taxi-mlops" and argv[1] != "taxi-mlops"
    assert_cli_accepts(argv[1:])


def test_the_platform_image_holds_every_package() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.M))
    assert copied == packages
    # PostgreSQL and S3 clients for the MLflow task; the KFP SDK for the pipeline's components
    assert '".[cloud,kfp]"' in dockerfile


def test_mlflow_allows_the_name_the_tasks_call_it_by() -> None:
    """MLflow 3.17 answers 403 to Host headers it does not know; the tasks call it by
    local.mlflow_url's internal DNS name."""
    local_values = {k: v for d in parsed() for item in d.get("locals", []) for k, v in item.items()}
    host = re.match(r"https?://([^/]+?)(:\d+)?$", local_values["mlflow_url"]).group(1)
    allowed = blocks("module", "mlflow")["environment"]["TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS"]
    assert host in [h.strip() for h in allowed.split(",")]


def test_the_level3_services_get_both_tokens_from_secrets_manager() -> None:
    tokens = local_values()["token_secrets"]
    assert tokens == {
        "TAXI_MLOPS_ADMIN_TOKEN": '${aws_secretsmanager_secret.token["admin"].arn}',
        "TAXI_MLOPS_FEEDBACK_TOKEN": '${aws_secretsmanager_secret.token["feedback"].arn}',
    }
    for name in ("level3", "model"):
        assert "local.token_secrets" in modules()[name]["secrets"]
