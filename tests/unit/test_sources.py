from __future__ import annotations

import pytest

from shared.data.generator import Drift
from shared.data.sources import GENERATED, MonthSource, load_source, month_range
from shared.errors import DataSourceError


def test_month_ranges() -> None:
    assert month_range("2019-11..2020-02") == ["2019-11", "2019-12", "2020-01", "2020-02"]
    assert month_range("2019-01, 2019-05") == ["2019-01", "2019-05"]
    assert month_range("2019-04") == ["2019-04"]
    with pytest.raises(DataSourceError, match="end is before the start"):
        month_range("2019-05..2019-01")
    with pytest.raises(DataSourceError, match="expected YYYY-MM"):
        month_range("2019-5")


def test_generated_source_is_deterministic_and_hashed() -> None:
    source = MonthSource(GENERATED, "2019-03", rows=2000, seed=4)
    a, b = load_source(source), load_source(source)
    assert a.sha256 == b.sha256 and len(a.trips.frame) == 2000
    drifted = load_source(MonthSource(GENERATED, "2019-03", rows=2000, seed=4, drift=Drift(0.6)))
    assert drifted.sha256 != a.sha256
    assert "pickup_datetime" in a.trips.frame.columns


def test_generated_source_needs_a_month() -> None:
    with pytest.raises(DataSourceError, match="needs a month"):
        load_source(MonthSource(GENERATED))
