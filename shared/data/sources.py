"""Where a month of trips comes from: a file, a folder of TLC files, a TLC-style URL, or the
generator. One type, so pipelines take any of them as a parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.data.digest import file_sha256, frame_sha256
from shared.data.generator import Drift, generate_month
from shared.data.load import TripMonth, check_month, load_month
from shared.data.schema import to_canonical
from shared.errors import DataSourceError

GENERATED = "generated"
_RANGE = re.compile(r"^(\d{4}-\d{2})\.\.(\d{4}-\d{2})$")


@dataclass(frozen=True)
class MonthSource:
    """``location`` is a file, a folder, an http(s) base URL, or ``"generated"``."""

    location: str
    month: str | None = None
    taxi: str = "yellow"
    rows: int = 50_000  # generated only
    seed: int = 0  # generated only
    drift: Drift = field(default_factory=Drift)  # generated only

    def describe(self) -> str:
        if self.location == GENERATED:
            return f"generated:{self.month}:rows={self.rows}:seed={self.seed}"
        if self.month and not Path(self.location).is_file():
            return f"{self.location}:{self.month}"
        return self.location


@dataclass(frozen=True)
class LoadedMonth:
    trips: TripMonth
    sha256: str


def load_source(
    source: MonthSource,
    *,
    cache_dir: Path | None = None,
    timeout_s: float = 60.0,
    columns: list[str] | None = None,
) -> LoadedMonth:
    """Load one month and hash its content (file bytes, or the generated frame)."""
    if source.location == GENERATED:
        if source.month is None:
            raise DataSourceError("generated data needs a month (YYYY-MM)")
        frame = generate_month(
            check_month(source.month), source.rows, seed=source.seed, drift=source.drift
        )
        trips = TripMonth(
            to_canonical(frame, source.describe()), source.describe(), source.month, "yellow"
        )
        return LoadedMonth(trips, frame_sha256(frame))
    trips = load_month(
        source.location,
        source.month,
        source.taxi,
        cache_dir=cache_dir,
        timeout_s=timeout_s,
        columns=columns,
    )
    return LoadedMonth(trips, file_sha256(trips.source))


def month_range(spec: str) -> list[str]:
    """``2019-01..2019-03`` -> three months; ``2019-01,2019-05`` -> two; ``2019-01`` -> one."""
    found = _RANGE.match(spec.strip())
    if found:
        start, end = (pd.Period(check_month(m), "M") for m in found.groups())
        if end < start:
            raise DataSourceError(f"month range {spec!r}: the end is before the start")
        return [str(p) for p in pd.period_range(start, end, freq="M")]
    return [check_month(m.strip()) for m in spec.split(",") if m.strip()]
