from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "tlc-yellow-sample"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own TAXI_MLOPS_HOME, so nothing touches ./.taxi-mlops."""
    home = tmp_path / "home"
    monkeypatch.setenv("TAXI_MLOPS_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("TAXI_MLOPS_") and name != "TAXI_MLOPS_HOME":
            monkeypatch.delenv(name)
    return home


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real TLC samples beside the project; tests using them skip where they are absent."""
    if not REAL_DATA.is_dir() or not any(REAL_DATA.glob("yellow_tripdata_*.parquet")):
        pytest.skip(f"real TLC samples not found at {REAL_DATA} (see ../shared/data/README.md)")
    return REAL_DATA


def real_month(data_dir: Path, month: str) -> Path:
    path = data_dir / f"yellow_tripdata_{month}.parquet"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path
