from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.data.generator import Drift, fit_stats, generate_month
from shared.data.schema import YELLOW_COLUMNS, to_canonical
from shared.data.validate import GLITCH_REASONS, ValidationBounds, clean_trips

BOUNDS = ValidationBounds()


def clean(frame: pd.DataFrame, month: str = "2019-03") -> tuple[pd.DataFrame, object]:
    return clean_trips(to_canonical(frame, "gen"), BOUNDS, month=month)


def test_tlc_yellow_schema_and_types() -> None:
    frame = generate_month("2019-03", 2000, seed=1)
    assert tuple(frame.columns) == YELLOW_COLUMNS
    assert str(frame["PULocationID"].dtype) == "Int64"
    assert str(frame["tpep_pickup_datetime"].dtype).startswith("datetime64")
    assert frame["tpep_pickup_datetime"].dt.to_period("M").astype(str).eq("2019-03").all()
    assert frame["PULocationID"].between(1, 265).all()


def test_same_seed_same_trips_other_seed_other_trips() -> None:
    a = generate_month("2019-03", 1000, seed=7)
    pd.testing.assert_frame_equal(a, generate_month("2019-03", 1000, seed=7))
    assert not a.equals(generate_month("2019-03", 1000, seed=8))


def test_clean_month_loses_few_rows() -> None:
    _, report = clean(generate_month("2019-03", 20_000, seed=1))
    assert report.glitch_fraction == 0
    assert report.rows_out / report.rows_in > 0.95


def test_slower_traffic_means_longer_trips() -> None:
    base_raw = generate_month("2019-03", 20_000, seed=1)
    slow_raw = generate_month("2019-03", 20_000, seed=1, drift=Drift(speed_factor=0.6))
    pd.testing.assert_series_equal(base_raw.trip_distance, slow_raw.trip_distance)
    base, _ = clean(base_raw)
    slow, _ = clean(slow_raw)
    ratio = np.median(slow.duration) / np.median(base.duration)
    assert 1.5 < ratio < 1.8  # 1/0.6 = 1.67; the 60-minute cap trims the long tail


def test_longer_trips_knob() -> None:
    base = generate_month("2019-03", 20_000, seed=1)
    longer = generate_month("2019-03", 20_000, seed=1, drift=Drift(distance_factor=1.5))
    assert longer.trip_distance.median() == pytest.approx(
        1.5 * base.trip_distance.median(), rel=0.03
    )


def test_zone_shift_moves_the_zone_mix() -> None:
    base = generate_month("2019-03", 20_000, seed=1)
    shifted = generate_month("2019-03", 20_000, seed=1, drift=Drift(zone_shift=0.8))
    top = base.PULocationID.value_counts().index[:10]
    assert shifted.PULocationID.isin(top).mean() < 0.7 * base.PULocationID.isin(top).mean()


def test_glitch_share_produces_rows_validation_catches() -> None:
    frame = generate_month("2019-03", 20_000, seed=1, drift=Drift(glitch_share=0.3))
    _, report = clean(frame)
    assert report.glitch_fraction == pytest.approx(0.3, abs=0.02)
    for reason in GLITCH_REASONS:
        assert report.dropped[reason] > 500


@pytest.mark.parametrize("bad", [{"speed_factor": 0}, {"zone_shift": 2}, {"glitch_share": -0.1}])
def test_drift_knobs_are_checked(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Drift(**bad)


def test_refitting_on_generated_data_recovers_the_stats() -> None:
    frames = [
        clean(generate_month(m, 30_000, seed=i), m)[0] for i, m in enumerate(["2019-03", "2019-04"])
    ]
    refit = fit_stats(frames)
    original = generate_month.__globals__["load_stats"]()
    top_original = np.argsort(original["pu_mix"])[-10:]
    top_refit = np.argsort(refit["pu_mix"])[-10:]
    assert len(set(top_original) & set(top_refit)) >= 8
    assert refit["speed"]["log_distance_slope"] == pytest.approx(
        original["speed"]["log_distance_slope"], abs=0.05
    )
