"""Tiny trip frames for unit tests: valid by default, with any field overridden per row."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU


def trips(n: int = 5, *, month: str = "2019-01", prefix: str = "", **columns: Any) -> pd.DataFrame:
    """``n`` valid trips in ``month`` (canonical names, or ``tpep_``/``lpep_`` with ``prefix``).

    Keyword arguments replace whole columns, e.g. ``trips(3, trip_distance=[1, -1, 2])``;
    ``minutes=[...]`` sets durations.
    """
    start = pd.Timestamp(f"{month}-01 08:00")
    pickup = start + pd.to_timedelta(np.arange(n) * 3, unit="h")
    minutes = np.asarray(columns.pop("minutes", np.linspace(5, 30, n)), dtype=float)
    frame = pd.DataFrame(
        {
            PICKUP: pickup,
            DROPOFF: pickup + pd.to_timedelta(minutes, unit="m"),
            PU: pd.array(np.arange(n) % 5 + 100, dtype="Int64"),
            DO: pd.array(np.arange(n) % 7 + 200, dtype="Int64"),
            DISTANCE: np.linspace(0.5, 8.0, n),
            "VendorID": pd.array([1] * n, dtype="Int64"),
        }
    )
    for name, values in columns.items():
        frame[name] = values
    if prefix:
        frame = frame.rename(
            columns={PICKUP: f"{prefix}pickup_datetime", DROPOFF: f"{prefix}dropoff_datetime"}
        )
    return frame


def ride(**overrides: Any) -> dict[str, Any]:
    """One valid prediction request body."""
    return {"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.5, **overrides}
