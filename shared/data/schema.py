"""The TLC trip schemas and the canonical frame every step after loading works on.

Yellow files name their timestamps ``tpep_*``, green files ``lpep_*``; newer files add
``airport_fee`` (or ``Airport_fee``). After :func:`to_canonical` a frame has
``pickup_datetime`` and ``dropoff_datetime`` whatever its origin, so no later step cares.
"""

from __future__ import annotations

import pandas as pd

from shared.errors import SchemaError

PICKUP = "pickup_datetime"
DROPOFF = "dropoff_datetime"
PU = "PULocationID"
DO = "DOLocationID"
DISTANCE = "trip_distance"
TARGET = "duration"

#: Columns the pipeline cannot do without (after renaming).
REQUIRED_COLUMNS: tuple[str, ...] = (PICKUP, DROPOFF, PU, DO, DISTANCE)

TAXI_PREFIX = {"yellow": "tpep_", "green": "lpep_"}

#: The TLC yellow schema in file order (what the generator writes).
YELLOW_COLUMNS: tuple[str, ...] = (
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
)


def detect_taxi_type(columns: pd.Index | list[str]) -> str | None:
    """'yellow' or 'green' from the timestamp prefix, or None if neither is present."""
    names = set(columns)
    for taxi, prefix in TAXI_PREFIX.items():
        if f"{prefix}pickup_datetime" in names or f"{prefix}dropoff_datetime" in names:
            return taxi
    return None


def to_canonical(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rename ``tpep_``/``lpep_`` timestamps to canonical names and check required columns.

    Raises :class:`SchemaError` naming every missing column and the file it is missing from.
    """
    taxi = detect_taxi_type(frame.columns)
    renames: dict[str, str] = {}
    if taxi is not None:
        prefix = TAXI_PREFIX[taxi]
        renames = {f"{prefix}pickup_datetime": PICKUP, f"{prefix}dropoff_datetime": DROPOFF}
    if "Airport_fee" in frame.columns:
        renames["Airport_fee"] = "airport_fee"
    out = frame.rename(columns=renames) if renames else frame
    missing = [c for c in REQUIRED_COLUMNS if c not in out.columns]
    if missing:
        shown = [
            f"{TAXI_PREFIX.get(taxi or 'yellow')}{c}" if c in (PICKUP, DROPOFF) else c
            for c in missing
        ]
        raise SchemaError(f"{source}: missing required column(s): {', '.join(shown)}")
    return out


def to_tlc(frame: pd.DataFrame, taxi: str = "yellow") -> pd.DataFrame:
    """The inverse of :func:`to_canonical`: TLC column names, for writing trip files that any
    loader here (and the TLC's own tools) reads."""
    prefix = TAXI_PREFIX[taxi]
    return frame.rename(
        columns={PICKUP: f"{prefix}pickup_datetime", DROPOFF: f"{prefix}dropoff_datetime"}
    )
