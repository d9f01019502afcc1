"""The AWS environment, read as HCL (the AWS provider cannot be downloaded here, so `validate`
and `plan` run in GitHub Actions): what must hold is checked on the parsed configuration."""

from __future__ import annotations

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


def parsed(folder: Path = AWS) -> list[dict[str, Any]]:
    return [
        hcl2.load(path.open(), serialization_options=OPTIONS)
        for path in sorted(folder.glob("*.tf"))
    ]


def blocks(kind: str, type_name: str, folder: Path = AWS) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in parsed(folder):
        for item in doc.get(kind, []):
            found.update(item.get(type_name, {}))
    return found


def test_the_ab_split_comes_from_variables() -> None:
    (listener,) = [x for x in blocks("resource", "aws_lb_listener").values() if x["port"] == 443]
    (action,) = listener["default_action"]
    weights = [g["weight"] for g in action["forward"][0]["target_group"]]
    assert weights == ["${local.blue_weight}", "${local.green_weight}"]
    local_values = {k: v for d in parsed() for item in d.get("locals", []) for k, v in item.items()}
    assert local_values["blue_weight"] == "${100 - local.green_weight}"
    # the variable, unless it would send traffic to a green service that runs no task
    assert local_values["green_weight"].endswith(": var.green_weight}")
    assert "var.green_version == 0" in local_values["green_weight"]


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
    ("github_deploy", "EcrToken"),
    ("kms", "AccountAdministers"),
    ("kms", "CloudWatchLogsUse"),
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


def parsed_dir(folder: Path) -> list[dict[str, Any]]:
    return [
        hcl2.load(path.open(), serialization_options=OPTIONS)
        for path in sorted(folder.glob("*.tf"))
    ]


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
    docs = parsed_dir(folder)
    names = declared(docs)
    missing = sorted(
        f"{kind}.{name}"
        for kind, name, _ in references(docs)
        if name not in names.get(kind, set()) and kind not in LOCAL_NAMES
    )
    assert missing == []


def test_module_calls_match_the_module_interface() -> None:
    docs = parsed_dir(AWS)
    calls = {k: v for doc in docs for item in doc.get("module", []) for k, v in item.items()}
    for name, call in calls.items():
        module_docs = parsed_dir((AWS / call["source"]).resolve())
        interface = declared(module_docs)
        variables = {k: v for d in module_docs for i in d.get("variable", []) for k, v in i.items()}
        meta = {"source", "for_each", "count", "providers", "depends_on", "version"}
        meta.add("__inline_comments__")  # python-hcl2's, not Terraform's
        given = set(call) - meta
        assert given - interface["var"] == set(), f"module.{name}: unknown inputs"
        required = {k for k, v in variables.items() if "default" not in v}
        assert required - given == set(), f"module.{name}: required inputs missing"
    # (`for m in module.x : m.attr` names no attribute: not checked here)
    used = {(n, a) for kind, n, a in references(docs) if kind == "module" and a is not None}
    for name, attribute in used:
        outputs = declared(parsed_dir((AWS / calls[name]["source"]).resolve()))["output"]
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


def test_the_model_services_are_pinned_to_their_variables() -> None:
    (model,) = [item["model"] for d in parsed() for item in d.get("module", []) if "model" in item]
    command = " ".join(strings(model["command"]))
    assert "level3 serve" in command
    assert "--pin-version ${tostring(max(each.value, 1))} --pin-variant ${each.key}" in command
    assert model["for_each"] == {"blue": "${var.blue_version}", "green": "${var.green_version}"}


# ------------------------------------------------- the image and the commands the tasks run

#: sample values for the interpolations in task commands
SAMPLES = {
    "${tostring(max(each.value, 1))}": "3",
    "${each.key}": "green",
    "${local.level3_url}": "https://alb.example",
}


def task_commands() -> dict[str, list[str]]:
    calls = {k: v for doc in parsed() for item in doc.get("module", []) for k, v in item.items()}
    return {
        name: [SAMPLES.get(part, part) for part in call["command"]]
        for name, call in calls.items()
        if call["source"].endswith("ecs_service")
    }


@pytest.mark.parametrize("task", ["mlflow", "model", "monitoring"])
def test_task_commands_parse_with_the_cli(task: str) -> None:
    """Each ECS task's command is accepted by the CLI in the image: options that were renamed
    or removed fail here, not in a cloud deployment."""
    command = task_commands()[task]
    assert command[0] == "taxi-mlops"
    assert_cli_accepts(command[1:])


def test_the_platform_image_holds_every_package() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.M))
    assert copied == packages
    assert '".[cloud]"' in dockerfile  # PostgreSQL and S3 clients for the MLflow task


def test_mlflow_allows_the_name_the_tasks_call_it_by() -> None:
    """MLflow 3.17 answers 403 to Host headers it does not know; the tasks call it by
    local.mlflow_url's internal DNS name."""
    local_values = {k: v for d in parsed() for item in d.get("locals", []) for k, v in item.items()}
    host = re.match(r"https?://([^/]+?)(:\d+)?$", local_values["mlflow_url"]).group(1)
    allowed = blocks("module", "mlflow")["environment"]["TAXI_MLOPS_MLFLOW_ALLOWED_HOSTS"]
    assert host in [h.strip() for h in allowed.split(",")]


def test_the_level3_services_get_the_feedback_token_from_secrets_manager() -> None:
    assert "feedback_token" in blocks("resource", "aws_secretsmanager_secret")
    text = (AWS / "services.tf").read_text()
    assert "TAXI_MLOPS_FEEDBACK_TOKEN = aws_secretsmanager_secret.feedback_token.arn" in text
