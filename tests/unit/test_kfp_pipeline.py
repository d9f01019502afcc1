"""The level-2 pipeline in Kubeflow: the committed YAML is what the code compiles to, the
components hold no step logic, and the adapters between artifacts and steps keep what the
Prefect flow would see (order, config, data digest)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from level2_training import kfp_data_steps, kfp_pipeline, kfp_steps
from level2_training.config import TrainingConfig
from level2_training.kfp_cli import COMMITTED_YAML
from shared.data.sources import MonthSource

ROOT = Path(__file__).resolve().parents[2]


def config() -> TrainingConfig:
    return TrainingConfig(
        train=[
            MonthSource("generated", m, rows=2000, seed=i)
            for i, m in enumerate(("2019-01", "2019-02", "2019-03"))
        ],
        val=MonthSource("generated", "2019-04", rows=2000, seed=99),
        families=["hgb"],
        trials=3,
        actor="a test",
    )


def test_the_committed_pipeline_is_what_the_code_compiles(tmp_path: Path) -> None:
    fresh = tmp_path / "pipeline.yaml"
    kfp_pipeline.compile_pipeline(str(fresh))
    assert fresh.read_text() == COMMITTED_YAML.read_text(), (
        "level2_training/kfp/pipeline.yaml is stale: run `taxi-mlops level2 kfp compile "
        "--out level2_training/kfp/pipeline.yaml` and review the difference"
    )


def test_the_image_and_packages_are_parameters(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    kfp_pipeline.compile_pipeline(str(out), "registry.example.com/taxi:v9", ("taxi-mlops[kfp]",))
    text = out.read_text()
    assert "image: registry.example.com/taxi:v9" in text
    assert "image: taxi-mlops:latest" not in text
    assert "taxi-mlops[kfp]" in text


@pytest.mark.parametrize("component", kfp_pipeline.COMPONENTS, ids=lambda f: f.__name__)
def test_a_component_only_wires_artifacts_to_the_shared_steps(component: object) -> None:
    """No step logic twice: a component imports nothing but the adapters (and json)."""
    source = inspect.getsource(component)  # type: ignore[arg-type]
    imports = [
        line.strip()
        for line in source.splitlines()
        if line.strip().startswith(("import ", "from "))
    ]
    assert imports, "a component must import what it uses itself"
    assert all(
        line in ("import json",)
        or line.startswith("from level2_training import kfp_steps")
        or line.startswith("from level2_training import kfp_data_steps")
        for line in imports
    ), imports


def test_pipeline_arguments_come_back_as_the_same_config() -> None:
    original = config()
    arguments = kfp_steps.pipeline_arguments(original, "key-1", "")
    # KFP passes JSON: numbers inside a struct come back as floats
    as_passed = json.loads(json.dumps(arguments).replace('"rows": 2000', '"rows": 2000.0'))
    for dropped in ("run_key", "tracking_uri"):
        as_passed.pop(dropped)
    checked, families, columns = kfp_steps.configure(kfp_steps.config_arguments(as_passed))
    assert TrainingConfig.model_validate_json(checked) == original
    assert families == ["linear", "hgb"]  # the baseline always runs, first
    # what the data components load: the families' columns (the timestamps always come)
    assert columns == ["DOLocationID", "PULocationID", "trip_distance"]


def test_a_held_back_month_travels_as_a_parameter_too() -> None:
    original = config().model_copy(update={"test": MonthSource("generated", "2019-05", rows=2000)})
    arguments = kfp_steps.pipeline_arguments(original, "key-1", "")
    assert arguments["test_source"]["month"] == "2019-05"
    checked, *_ = kfp_steps.configure(kfp_steps.config_arguments(arguments))
    assert TrainingConfig.model_validate_json(checked) == original
    assert kfp_steps.pipeline_arguments(config(), "k", "")["test_source"] == {}


def test_a_bad_parameter_is_refused_by_name() -> None:
    arguments = kfp_steps.pipeline_arguments(config(), "key-1", "")
    arguments["trials"] = "many"
    with pytest.raises(ValidationError, match="trials"):
        kfp_steps.configure(kfp_steps.config_arguments(arguments))
    arguments = kfp_steps.pipeline_arguments(config(), "key-1", "")
    arguments["families"] = ["hgb", "xgboost"]
    with pytest.raises(Exception, match="xgboost"):
        kfp_steps.configure(kfp_steps.config_arguments(arguments))


def test_months_are_gathered_in_the_configs_order(tmp_path: Path) -> None:
    """A fan-out may finish in any order; the rows and the data digest follow the config."""
    cfg = config()
    stored = []
    for i, source in enumerate(cfg.train):
        path = tmp_path / f"m{i}.parquet"
        pd.DataFrame({"month": [source.month]}).to_parquet(path)
        record = {
            "role": "train",
            "source": source.describe(),
            "sha256": str(i),
            "month": source.month,
            "rows_in": 1,
            "rows_out": 1,
            "dropped": {},
        }
        stored.append(
            kfp_data_steps.Stored(str(path), {"describe": source.describe(), "data_input": record})
        )
    gathered = tmp_path / "train"
    meta = kfp_data_steps.gather_months(cfg.model_dump_json(), stored[::-1], str(gathered))
    train = kfp_data_steps.Stored(str(gathered), meta)
    val_record = {**stored[0].metadata["data_input"], "role": "val", "sha256": "v"}
    val = kfp_data_steps.Stored(stored[0].path, {"data_input": val_record})
    frames, _ = kfp_steps.frames(train, val)
    assert [f["month"][0] for f in frames] == ["2019-01", "2019-02", "2019-03"]
    digest = kfp_steps.digest(train, val)
    assert [i["sha256"] for i in digest["inputs"]] == ["0", "1", "2", "v"]


def test_the_exit_handler_fails_a_run_left_running(isolated_home: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment("kfp-exit")
    run = client.create_run(experiment, tags={kfp_steps.RUN_KEY_TAG: "k1"})
    assert kfp_steps.finish("kfp-exit", "k1") == "FAILED"
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert kfp_steps.finish("kfp-exit", "k2") == "no MLflow run"
    done = client.create_run(experiment, tags={kfp_steps.RUN_KEY_TAG: "k3"})
    client.set_terminated(done.info.run_id, "FINISHED")
    assert kfp_steps.finish("kfp-exit", "k3") == "FINISHED"
    assert mlflow.get_tracking_uri().startswith("sqlite")


def test_a_failed_run_names_the_step_and_the_cause(tmp_path: Path) -> None:
    from level2_training.kfp_cli import _failure

    log = tmp_path / "run.log"
    log.write_text(
        "            Traceback (most recent call last):\n"
        '              File "x.py", line 1, in <module>\n'
        "            shared.errors.DataQualityError: bad.parquet: 61% of rows are invalid\n"
    )
    exc = RuntimeError(
        "Pipeline \x1b[95m'taxi-level2-training'\x1b[0m finished with status FAILURE. Inner task "
        "failed: \x1b[96m'validate-month'\x1b[0m inside 'exit-handler-1'."
    )
    message = _failure(exc, log)
    assert message.startswith("the KFP pipeline failed in 'validate-month' inside 'exit-handler-1'")
    assert "DataQualityError: bad.parquet: 61% of rows are invalid" in message
    assert str(log) in message and "\x1b" not in message


def test_the_data_components_import_neither_mlflow_nor_scikit_learn() -> None:
    """About half of a run's components are data steps, each a process (a pod) of its own:
    their module must stay light, or each pays ~4 s of imports to load a Parquet file."""
    import subprocess
    import sys

    probe = (
        "import sys, level2_training.kfp_data_steps; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'sklearn', 'prefect'}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert completed.stdout.strip() == "[]", completed.stdout
