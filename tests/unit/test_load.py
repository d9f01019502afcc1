from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shared.data.load import load_month, month_from_name, read_trip_file, resolve_trip_file
from shared.data.schema import DROPOFF, PICKUP, to_canonical
from shared.errors import DataSourceError, SchemaError
from tests.factories import trips


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("prefix", ["tpep_", "lpep_"])
def test_yellow_and_green_timestamps_become_canonical(tmp_path: Path, prefix: str) -> None:
    path = write(trips(4, prefix=prefix), tmp_path / "yellow_tripdata_2019-01.parquet")
    loaded = read_trip_file(path)
    assert {PICKUP, DROPOFF} <= set(loaded.frame.columns)
    assert loaded.taxi == ("yellow" if prefix == "tpep_" else "green")
    assert loaded.month == "2019-01"


@pytest.mark.parametrize("fee", ["airport_fee", "Airport_fee", None])
def test_with_or_without_airport_fee(fee: str | None) -> None:
    frame = trips(3, prefix="tpep_")
    if fee:
        frame[fee] = 1.25
    out = to_canonical(frame, "x.parquet")
    assert ("airport_fee" in out.columns) == bool(fee)


def test_missing_columns_are_named_with_the_file(tmp_path: Path) -> None:
    frame = trips(3, prefix="tpep_").drop(columns=["trip_distance", "DOLocationID"])
    path = write(frame, tmp_path / "t.parquet")
    with pytest.raises(
        SchemaError, match=r"t\.parquet: missing required column\(s\): DOLocationID, trip_distance"
    ):
        read_trip_file(path)


def test_file_without_timestamps_names_the_tlc_columns(tmp_path: Path) -> None:
    frame = trips(3, prefix="tpep_").drop(columns=["tpep_pickup_datetime", "tpep_dropoff_datetime"])
    with pytest.raises(SchemaError, match="tpep_pickup_datetime, tpep_dropoff_datetime"):
        read_trip_file(write(frame, tmp_path / "t.parquet"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.touch()
    with pytest.raises(DataSourceError, match=r"empty\.parquet: the file is empty"):
        read_trip_file(path)


def test_parquet_with_no_rows(tmp_path: Path) -> None:
    path = write(trips(3, prefix="tpep_").iloc[:0], tmp_path / "none.parquet")
    with pytest.raises(DataSourceError, match="has no rows"):
        read_trip_file(path)


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("VendorID,foo\n1,2\n")
    with pytest.raises(DataSourceError, match=r"fake\.parquet: not a parquet file"):
        read_trip_file(path)


def test_truncated_parquet(tmp_path: Path) -> None:
    good = write(trips(50, prefix="tpep_"), tmp_path / "good.parquet").read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataSourceError, match=r"cut\.parquet: unreadable parquet"):
        read_trip_file(path)


def test_csv_with_unparseable_timestamps_keeps_the_rows(tmp_path: Path) -> None:
    frame = trips(3, prefix="tpep_").astype({"tpep_pickup_datetime": str})
    frame.loc[1, "tpep_pickup_datetime"] = "not a time"
    loaded = read_trip_file(write(frame, tmp_path / "yellow_tripdata_2019-01.csv"))
    assert len(loaded.frame) == 3
    assert loaded.frame[PICKUP].isna().sum() == 1  # counted as missing by validation


def test_folder_source_needs_a_month_and_finds_the_tlc_name(tmp_path: Path) -> None:
    write(trips(3, prefix="tpep_"), tmp_path / "yellow_tripdata_2019-03.parquet")
    assert resolve_trip_file(tmp_path, "2019-03").name == "yellow_tripdata_2019-03.parquet"
    with pytest.raises(DataSourceError, match="say which month"):
        resolve_trip_file(tmp_path)
    with pytest.raises(DataSourceError, match=r"has no yellow_tripdata_2019-04\.parquet"):
        resolve_trip_file(tmp_path, "2019-04")
    with pytest.raises(DataSourceError, match="expected YYYY-MM"):
        resolve_trip_file(tmp_path, "2019-13")


def test_missing_path() -> None:
    with pytest.raises(DataSourceError, match="no such file"):
        load_month("/nonexistent/yellow_tripdata_2019-01.parquet")


def test_columns_subset_still_reads_timestamps(tmp_path: Path) -> None:
    path = write(trips(3, prefix="tpep_"), tmp_path / "yellow_tripdata_2019-01.parquet")
    loaded = load_month(path, columns=["PULocationID", "DOLocationID", "trip_distance"])
    assert set(loaded.frame.columns) == {
        PICKUP,
        DROPOFF,
        "PULocationID",
        "DOLocationID",
        "trip_distance",
    }


def test_month_from_name() -> None:
    assert month_from_name("x/green_tripdata_2021-07.parquet") == "2021-07"
    assert month_from_name("trips.parquet") is None
