from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from shared.data.generator import Drift, generate_month
from taxi_mlops.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_help_lists_every_level() -> None:
    code, out = run("--help")
    assert code == 0
    for group in ("data", "level0", "level1", "demo"):
        assert group in out


def test_generate_then_validate_json(isolated_home: Path) -> None:
    code, out = run(
        "data", "generate", "--month", "2019-05", "--rows", "3000", "--seed", "1", "--json"
    )
    assert code == 0, out
    path = json.loads(out)["path"]
    assert path.startswith(str(isolated_home))
    code, out = run("data", "validate", path, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["rows_in"] == 3000
    assert report["rows_in"] - report["rows_out"] == sum(report["dropped"].values())


def test_validate_garbage_month_fails_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "yellow_tripdata_2019-05.parquet"
    generate_month("2019-05", 3000, seed=1, drift=Drift(glitch_share=0.7)).to_parquet(path)
    code, out = run("data", "validate", str(path), "--json")
    payload = json.loads(out)
    assert code == 2
    assert payload["ok"] is False and "Refusing to use this data" in payload["error"]
    assert payload["dropped"]["distance_out_of_range"] > 0


def test_errors_are_one_line_not_tracebacks(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("hello")
    code, out = run("data", "validate", str(bad))
    assert code == 2
    assert "not a parquet file" in out and "Traceback" not in out
    code, out = run("data", "generate", "--month", "2019-5", "--rows", "10")
    assert code == 2 and "expected YYYY-MM" in out


def test_level1_train_json(tmp_path: Path) -> None:
    files = []
    for i, month in enumerate(["2019-01", "2019-02"]):
        path = tmp_path / f"yellow_tripdata_{month}.parquet"
        generate_month(month, 4000, seed=i).to_parquet(path)
        files.append(str(path))
    out_path = tmp_path / "model.joblib"
    code, out = run(
        "level1", "train", "--train", files[0], "--val", files[1], "--out", str(out_path), "--json"
    )
    assert code == 0, out
    result = json.loads(out)
    for key in ("train_rmse", "val_rmse", "train_rows", "val_rows", "train_dropped", "val_dropped"):
        assert key in result
    assert out_path.exists()
    meta = json.loads(Path(str(out_path) + ".json").read_text())
    assert meta["train_file"]["sha256"] and meta["features"] == [
        "PULocationID",
        "DOLocationID",
        "trip_distance",
    ]


def test_level1_train_refuses_garbage(tmp_path: Path) -> None:
    good, bad = (
        tmp_path / "yellow_tripdata_2019-02.parquet",
        tmp_path / "yellow_tripdata_2019-01.parquet",
    )
    generate_month("2019-02", 3000, seed=2).to_parquet(good)
    generate_month("2019-01", 3000, seed=1, drift=Drift(glitch_share=0.8)).to_parquet(bad)
    code, out = run(
        "level1",
        "train",
        "--train",
        str(bad),
        "--val",
        str(good),
        "--out",
        str(tmp_path / "m"),
        "--json",
    )
    assert code == 2 and "Refusing" in json.loads(out)["error"]
    assert not (tmp_path / "m").exists()


def test_level1_serve_refuses_a_missing_model(tmp_path: Path) -> None:
    code, out = run("level1", "serve", "--model", str(tmp_path / "none.joblib"))
    assert code == 2 and "no such model file" in out


def test_csv_input_works_like_parquet(tmp_path: Path) -> None:
    frame = generate_month("2019-05", 500, seed=3)
    path = tmp_path / "yellow_tripdata_2019-05.csv"
    frame.to_csv(path, index=False)
    code, out = run("data", "validate", str(path), "--json")
    assert code == 0, out
    assert json.loads(out)["rows_in"] == len(pd.read_csv(path))


def test_a_bad_setting_names_its_variable_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_URL", "ftp://example.org")
    monkeypatch.setenv("TAXI_MLOPS_STACK_REPLICAS", "0")
    result = CliRunner().invoke(main, ["data", "generate", "--month", "2019-05", "--rows", "10"])
    assert result.exit_code == 2
    assert "TAXI_MLOPS_LEVEL3_URL: must start with http:// or https://" in result.output
    assert "TAXI_MLOPS_STACK_REPLICAS" in result.output
    assert "Traceback" not in result.output and "pydantic" not in result.output


def test_level3_url_comes_from_settings_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_LEVEL3_URL", "http://127.0.0.1:9/")
    code, out = run("level3", "status")
    assert code == 2 and "http://127.0.0.1:9: cannot reach the level-3 service" in out
    code, out = run("level3", "status", "--url", "http://127.0.0.1:7")
    assert code == 2 and "http://127.0.0.1:7: cannot reach" in out
