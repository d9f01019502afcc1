"""Checks against the real TLC samples in ../shared/data (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level1_devops.train import train_from_files
from shared import reference
from shared.data.generator import generate_month
from shared.data.load import read_trip_file
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, check_quality, clean_trips
from tests.conftest import real_month

pytestmark = pytest.mark.realdata
BOUNDS = ValidationBounds()


def test_level1_matches_the_course_recipe_within_one_percent(
    real_data: Path, tmp_path: Path
) -> None:
    train, val = real_month(real_data, "2019-01"), real_month(real_data, "2019-02")
    course = reference.train_and_validate(train, val)
    ours = train_from_files(str(train), str(val), tmp_path / "m.joblib", BOUNDS)
    assert ours["val_rmse"] == pytest.approx(course["val_rmse"], rel=0.01)
    # Our validation also drops glitches the course keeps, so row counts may differ a little.
    assert abs(ours["val_rows"] - course["val_rows"]) <= 0.01 * course["val_rows"]


def test_every_real_month_passes_the_quality_gate(real_data: Path) -> None:
    files = sorted(real_data.glob("yellow_tripdata_*.parquet"))
    assert len(files) >= 12
    for path in files:
        loaded = read_trip_file(path)
        _, report = clean_trips(loaded.frame, BOUNDS, month=loaded.month, source=loaded.source)
        check_quality(report, BOUNDS)
        assert report.glitch_fraction < 0.01, report.to_dict()
        assert report.rows_out / report.rows_in > 0.95


def _profile(frame: pd.DataFrame) -> dict[str, object]:
    clean, _ = clean_trips(frame, BOUNDS)
    moving = clean[clean.trip_distance > 0.1]
    speed = moving.trip_distance / (moving.duration / 60)
    hour = pd.DatetimeIndex(moving.pickup_datetime).hour
    return {
        "duration_q": np.percentile(clean.duration, [25, 50, 75, 90]),
        "distance_q": np.percentile(clean.trip_distance, [25, 50, 75, 90]),
        "rush_over_night_speed": speed[(hour >= 16) & (hour <= 18)].median()
        / speed[(hour >= 2) & (hour <= 4)].median(),
        "top_zones": set(clean.PULocationID.value_counts().index[:15]),
        "duration_std": clean.duration.std(),
    }


def test_generator_statistics_follow_the_real_samples(real_data: Path) -> None:
    real = pd.concat(
        [read_trip_file(real_month(real_data, m)).frame for m in ("2019-01", "2019-02", "2019-03")],
        ignore_index=True,
    )
    fake = to_canonical(generate_month("2019-02", 30_000, seed=11), "generated")
    r, g = _profile(real), _profile(fake)
    np.testing.assert_allclose(g["duration_q"], r["duration_q"], rtol=0.2)
    np.testing.assert_allclose(g["distance_q"], r["distance_q"], rtol=0.2)
    assert g["rush_over_night_speed"] == pytest.approx(r["rush_over_night_speed"], rel=0.15)
    assert len(g["top_zones"] & r["top_zones"]) >= 11
    assert g["duration_std"] == pytest.approx(r["duration_std"], rel=0.15)
