"""The AWS environment, read as HCL (the AWS provider cannot be downloaded here, so `validate`
and `plan` run in GitHub Actions): what must hold is checked on the parsed configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / "infra" / "envs" / "aws"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)


def parsed() -> list[dict[str, Any]]:
    return [
        hcl2.load(path.open(), serialization_options=OPTIONS) for path in sorted(AWS.glob("*.tf"))
    ]


def blocks(kind: str, type_name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in parsed():
        for item in doc.get(kind, []):
            found.update(item.get(type_name, {}))
    return found


def test_the_ab_split_comes_from_variables() -> None:
    (listener,) = [x for x in blocks("resource", "aws_lb_listener").values() if x["port"] == 443]
    (action,) = listener["default_action"]
    weights = [g["weight"] for g in action["forward"][0]["target_group"]]
    assert weights == ["${local.blue_weight}", "${var.green_weight}"]
    local_values = {k: v for d in parsed() for item in d.get("locals", []) for k, v in item.items()}
    assert local_values["blue_weight"] == "${100 - var.green_weight}"


def test_buckets_block_public_access() -> None:
    buckets = blocks("resource", "aws_s3_bucket")
    guards = blocks("resource", "aws_s3_bucket_public_access_block")
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


def statements() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, doc in blocks("data", "aws_iam_policy_document").items():
        for statement in doc.get("statement", []):
            out.append((name, statement))
    return out


#: (policy document, statement sid) allowed to name "*": actions without resource-level
#: permissions, and the key policy, where "*" means the key itself.
STAR_ALLOWED = {
    ("execution", "EcrToken"),
    ("github_deploy", "EcrToken"),
    ("kms", "AccountAdministers"),
    ("kms", "CloudWatchLogsUse"),
}


@pytest.mark.parametrize("policy", sorted({n for n, _ in statements()}))
def test_no_wildcard_action_and_no_star_resource_without_a_reason(policy: str) -> None:
    for name, statement in statements():
        if name != policy or statement.get("effect") == "Deny":
            continue
        actions = statement.get("actions", [])
        if (name, statement.get("sid")) not in {("kms", "AccountAdministers")}:
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
        if "*" in statement.get("resources", []):
            assert (name, statement.get("sid")) in STAR_ALLOWED, (name, statement)
