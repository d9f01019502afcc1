"""The level-2 Prefect flow in-process (temporary Prefect server, SQLite MLflow per test)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from level2_training import registry, runtime
from level2_training.flow import TrainingConfig, training_flow
from shared.data.generator import Drift
from shared.data.sources import GENERATED, MonthSource
from shared.errors import DataQualityError
from shared.settings import Settings

pytestmark = pytest.mark.integration
NAME = "taxi-trip-duration"


def config(settings: Settings, **overrides: object) -> TrainingConfig:
    base = {
        "train": [MonthSource(GENERATED, "2019-01", rows=6000, seed=1)],
        "val": MonthSource(GENERATED, "2019-02", rows=4000, seed=2),
        "families": ["ridge", "hgb"],
        "trials": 2,
        "seed": 0,
        "artifact_location": runtime.artifact_location(settings),
        "actor": "pytest",
    }
    return TrainingConfig(**{**base, **overrides})


@pytest.fixture
def settings(isolated_home: Path) -> Settings:
    settings = Settings()
    runtime.configure(settings)
    runtime.hide_expected_tracebacks()
    return settings


def test_flow_tracks_registers_and_promotes(settings: Settings) -> None:
    result = training_flow(config(settings))
    assert result.best.family == "hgb"
    assert result.best.val_rmse < result.baseline.val_rmse
    assert result.registered.version == 1
    assert result.registered.aliases == ["candidate", "champion"]
    assert result.data["content_hash"] and len(result.data["inputs"]) == 2

    client = MlflowClient()
    parent = client.get_run(result.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["baseline_val_rmse"] == pytest.approx(result.baseline.val_rmse)
    children = client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 1 + 2 + 2  # the linear baseline, then 2 trials per family
    trial = next(r for r in children if r.data.tags["family"] == "hgb")
    assert {"learning_rate", "max_leaf_nodes", "seed"} <= set(trial.data.params)
    assert {"val_rmse", "val_mae", "train_rmse"} <= set(trial.data.metrics)
    assert trial.data.tags["git_commit"] and trial.data.tags["data_content_hash"]
    digest = mlflow.artifacts.load_dict(f"runs:/{trial.info.run_id}/data_digest.json")
    assert [i["role"] for i in digest["inputs"]] == ["train", "val"]
    assert digest["inputs"][0]["rows_in"] == 6000
    # a model only in each family's best trial (the baseline's is its only one)
    logged = client.search_logged_models([result.experiment_id])
    assert sorted(m.source_run_id for m in logged) == sorted(
        search.run_id for search in result.families.values()
    )
    assert result.best.run_id in {m.source_run_id for m in logged} and len(logged) == 3

    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    inputs = {i.name for i in champion.metadata.get_input_schema().inputs}
    assert inputs == {"PULocationID", "DOLocationID", "trip_distance", "pickup_datetime"}
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
    requirements = (model_dir / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "skops==" in requirements
    assert (model_dir / "code" / "shared" / "features.py").exists()


def test_weaker_candidate_stays_candidate_and_history_says_why(settings: Settings) -> None:
    training_flow(config(settings))
    weaker = training_flow(config(settings, families=["linear"]))
    assert weaker.registered.promoted is False
    client = MlflowClient()
    assert registry.aliases(client, NAME) == {"candidate": 2, "champion": 1}
    last = registry.history(client, NAME)[-1]
    assert (last.alias, last.action, last.to_version) == ("champion", "kept", 1)
    assert "does not beat champion" in last.reason and last.actor == "pytest"


def test_the_incumbent_given_is_the_one_the_candidate_must_beat(settings: Settings) -> None:
    """Level 4 passes the served blue: the gate's RMSE is that version's on this run's
    validation month, whatever the champion alias says."""
    training_flow(config(settings, families=["linear"]))  # v1, champion
    training_flow(config(settings, families=["hgb"], auto_champion=False))  # v2, not champion
    third = training_flow(
        config(settings, families=["ridge"], incumbent_version=2, auto_champion=False)
    )
    assert third.registered.previous_champion.version == 2
    champion_rmse = training_flow(config(settings, families=["ridge"], auto_champion=False))
    assert champion_rmse.registered.previous_champion.version == 1
    assert third.registered.previous_champion.val_rmse != pytest.approx(
        champion_rmse.registered.previous_champion.val_rmse
    )
    assert "vs served blue v2" in third.registered.decision


def test_garbage_month_registers_nothing_and_keeps_the_champion(settings: Settings) -> None:
    training_flow(config(settings, families=["linear"]))
    before = registry.history(MlflowClient(), NAME)
    garbage = MonthSource(GENERATED, "2019-01", rows=6000, seed=1, drift=Drift(glitch_share=0.6))
    with pytest.raises(DataQualityError, match="Refusing to use this data"):
        training_flow(config(settings, train=[garbage]))
    client = MlflowClient()
    assert registry.aliases(client, NAME) == {"candidate": 1, "champion": 1}
    assert registry.history(client, NAME) == before
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1


def test_same_data_and_seed_give_the_same_result(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = training_flow(config(settings, trials=3))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    second = training_flow(config(settings, trials=3))
    for key in ("family", "params", "val_rmse", "val_mae"):
        assert getattr(first.best, key) == getattr(second.best, key)
    assert {f: r.val_rmse for f, r in first.families.items()} == {
        f: r.val_rmse for f, r in second.families.items()
    }


def test_a_held_back_month_is_scored_after_the_choice_and_never_makes_it(
    settings: Settings,
) -> None:
    from shared.data.sources import load_source
    from shared.data.validate import ValidationBounds, validate_month
    from shared.evaluate import rmse
    from shared.features import split_xy

    test_month = MonthSource(GENERATED, "2019-03", rows=4000, seed=3, drift=Drift(speed_factor=0.8))
    without = training_flow(config(settings, registered_model="plain"))
    held = training_flow(config(settings, registered_model="held", test=test_month))
    # the choice and every validation figure are those of the run without a test month
    assert held.best.family == without.best.family
    assert {f: r.val_rmse for f, r in held.families.items()} == {
        f: r.val_rmse for f, r in without.families.items()
    }
    assert without.test is None and held.test is not None
    assert [i["role"] for i in held.data["inputs"]] == ["train", "val", "test"]
    # the figures are the registered model's and the baseline's on that month
    loaded = load_source(test_month)
    frame, _ = validate_month(
        loaded.trips.frame, ValidationBounds(), month="2019-03", source="test"
    )
    _, y = split_xy(frame)
    model = mlflow.sklearn.load_model(f"models:/held/{held.registered.version}")
    assert held.test.best_rmse == pytest.approx(rmse(y, model.predict(frame)), rel=1e-9)
    assert held.test.rows == len(frame)
    assert held.test.baseline_rmse > held.test.best_rmse  # slower traffic hurts the baseline more
    parent = MlflowClient().get_run(held.mlflow_run_id)
    assert parent.data.metrics["test_rmse"] == pytest.approx(held.test.best_rmse)
    assert parent.data.tags["test_month"] == "2019-03"


def test_prefect_booted_early_is_the_server_the_flows_use(settings: Settings) -> None:
    """`level2 train` starts Prefect's temporary server while it imports its flow; the flow's
    client then finds that server running (Prefect keeps one per process), not a second."""
    import threading

    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer

    ready = runtime.boot_embedded_prefect()
    ready()
    server = SubprocessASGIServer()
    assert server.running and server.server_process is not None
    assert server.server_process.poll() is None
    assert not [t for t in threading.enumerate() if t.name == "prefect-boot"]
    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == server.api_url
        assert client.hello().status_code == 200
    assert training_flow(config(settings, families=["ridge"], trials=1)).best.family == "ridge"


def test_with_a_prefect_server_configured_nothing_is_booted() -> None:
    import threading

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        ready = runtime.boot_embedded_prefect()
    assert not [t for t in threading.enumerate() if t.name == "prefect-boot"]
    ready()  # nothing to wait for


def test_a_new_home_seeded_from_the_template_is_at_prefects_head_and_serves(
    tmp_path: Path,
) -> None:
    """The installation's template (made here if no run made it yet) is Prefect's own migrations
    at its head revision, and a server starts on a copy of it (tests/unit/test_prefect_template.py
    covers the copying)."""
    import sqlite3
    import subprocess
    import sys

    import prefect
    from alembic.script import ScriptDirectory
    from prefect.server.database.alembic_commands import alembic_config
    from prefect.server.database.orm_models import AioSqliteORMConfiguration

    from level2_training.prefect_template import seed_database, upgrade_command
    from shared.services import free_port, http_json, start_service

    # what an image runs at build time (Dockerfile): the template, made once, and its path
    made = subprocess.run(
        [sys.executable, "-m", "level2_training.prefect_template"],
        capture_output=True,
        text=True,
        check=True,
    )
    template = Path(made.stdout.strip())
    assert template.name == f"prefect-{prefect.__version__}.db" and template.is_file()
    home = tmp_path / "prefect-home"
    assert seed_database(home / "prefect.db", template, upgrade_command())
    with sqlite3.connect(home / "prefect.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    migrations = alembic_config()
    migrations.set_main_option("version_locations", str(AioSqliteORMConfiguration().versions_dir))
    assert [revision] == ScriptDirectory.from_config(migrations).get_heads()

    port = free_port()
    command = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--no-ui"]
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with start_service(
        [*command, "--no-services", "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}",
        tmp_path / "server.log",
        health_path="/api/health",
        env=env,
        timeout_s=180,
    ) as server:
        status, count = http_json("POST", f"{server.url}/api/flow_runs/count", {})
    assert (status, count) == (200, 0)
