from __future__ import annotations

from pathlib import Path

import pytest

from level2_training import runtime
from shared.errors import ConfigError
from shared.settings import Settings


@pytest.mark.parametrize(
    ("uri", "embedded"),
    [
        (None, True),
        ("sqlite:////tmp/x/mlflow.db", True),
        ("http://127.0.0.1:5000", False),
        ("https://mlflow.example.org", False),
    ],
)
def test_local_stores_keep_artifacts_under_home(
    uri: str | None, embedded: bool, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = Settings()
    assert settings.embedded_mlflow is embedded
    location = runtime.artifact_location(settings)
    if embedded:
        assert location == (isolated_home / "mlflow" / "artifacts").as_uri()
    else:
        assert location is None


def test_all_paths_hang_off_home(isolated_home: Path) -> None:
    settings = Settings()
    for path in (
        settings.models_dir,
        settings.mlflow_dir,
        settings.prefect_home,
        settings.download_cache_dir,
        settings.run_dir,
        settings.reports_dir,
    ):
        assert path.is_relative_to(isolated_home)


def test_base_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_TLC_BASE_URL", "ftp://example.org")
    with pytest.raises(ValueError, match="must start with http"):
        Settings()


def test_admin_token_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import DEV_ADMIN_TOKEN, admin_token

    assert admin_token(Settings()) == DEV_ADMIN_TOKEN  # dev: the documented default
    monkeypatch.setenv("TAXI_MLOPS_ENV", "prod")
    with pytest.raises(ValueError, match="TAXI_MLOPS_ADMIN_TOKEN must be set"):
        admin_token(Settings())
    monkeypatch.setenv("TAXI_MLOPS_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
    with pytest.raises(ValueError, match="not the dev default"):
        admin_token(Settings())
    strong = "0123456789abcdef" * 4  # what `openssl rand -hex 32` gives
    monkeypatch.setenv("TAXI_MLOPS_ADMIN_TOKEN", strong)
    assert admin_token(Settings()) == strong


@pytest.mark.parametrize("field", ["admin", "feedback"])
@pytest.mark.parametrize(
    ("env", "value", "refused"),
    [
        ("prod", "x", "at least 32 characters"),
        ("prod", "short-but-not-empty", "at least 32 characters"),
        ("prod", " " + "a" * 40, "whitespace"),
        ("prod", "a" * 20 + " " + "a" * 20, "whitespace"),
        ("dev", "a-token-with-a-newline\n", "whitespace"),
    ],
)
def test_weak_or_unmatchable_tokens_are_refused(
    monkeypatch: pytest.MonkeyPatch, field: str, env: str, value: str, refused: str
) -> None:
    from shared import settings as module

    monkeypatch.setenv("TAXI_MLOPS_ENV", env)
    monkeypatch.setenv(f"TAXI_MLOPS_{field.upper()}_TOKEN", value)
    rule = getattr(module, f"{field}_token")
    with pytest.raises(ConfigError, match=refused) as caught:
        rule(Settings())
    assert f"TAXI_MLOPS_{field.upper()}_TOKEN" in str(caught.value)


def test_the_feedback_token_has_its_own_dev_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import DEV_ADMIN_TOKEN, DEV_FEEDBACK_TOKEN, feedback_token

    assert feedback_token(Settings()) == DEV_FEEDBACK_TOKEN != DEV_ADMIN_TOKEN
    monkeypatch.setenv("TAXI_MLOPS_ENV", "prod")
    monkeypatch.setenv("TAXI_MLOPS_FEEDBACK_TOKEN", DEV_FEEDBACK_TOKEN)
    with pytest.raises(ConfigError, match="not the dev default"):
        feedback_token(Settings())


def test_every_field_has_the_variable_users_set() -> None:
    from shared.settings import env_var

    assert env_var("home") == "TAXI_MLOPS_HOME"
    assert env_var("mlflow_tracking_uri") == "TAXI_MLOPS_MLFLOW_TRACKING_URI"
    assert env_var("stack_port_base") == "TAXI_MLOPS_STACK_PORT_BASE"
