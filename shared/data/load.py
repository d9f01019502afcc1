"""Read TLC trip months from a file, a folder of monthly files, or the TLC's public URL."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.data.download import PARQUET_MAGIC, download_month, month_file_name
from shared.data.schema import DROPOFF, PICKUP, detect_taxi_type, to_canonical
from shared.errors import DataSourceError

logger = logging.getLogger(__name__)

_MONTH_IN_NAME = re.compile(r"(yellow|green)_tripdata_(\d{4}-\d{2})")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class TripMonth:
    """A loaded trip file in the canonical schema, with where it came from."""

    frame: pd.DataFrame
    source: str
    month: str | None
    taxi: str | None


def check_month(month: str) -> str:
    if not _MONTH.match(month):
        raise DataSourceError(f"month {month!r}: expected YYYY-MM, e.g. 2019-01")
    return month


def month_from_name(path: str | Path) -> str | None:
    """The ``YYYY-MM`` in a TLC-style file name, or None."""
    found = _MONTH_IN_NAME.search(Path(str(path)).name)
    return found.group(2) if found else None


def _read_parquet(path: Path, columns: list[str] | None) -> pd.DataFrame:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != PARQUET_MAGIC:
        raise DataSourceError(f"{path}: not a parquet file (it does not start with 'PAR1')")
    try:
        schema_names = pq.read_schema(path).names
        wanted = None if columns is None else [c for c in schema_names if c in set(columns)]
        return pq.read_table(path, columns=wanted).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataSourceError(f"{path}: unreadable parquet file ({exc})") from None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{path}: unreadable CSV file ({exc})") from None
    except pd.errors.EmptyDataError:
        raise DataSourceError(f"{path}: the CSV file is empty") from None
    for column in frame.columns:
        if column.endswith("pickup_datetime") or column.endswith("dropoff_datetime"):
            # Unparseable stamps become NaT and are then counted by validation, not lost silently.
            frame[column] = pd.to_datetime(frame[column], errors="coerce", format="ISO8601")
    return frame


def read_trip_file(path: str | Path, columns: list[str] | None = None) -> TripMonth:
    """Read one parquet or CSV trip file into the canonical schema.

    ``columns`` (TLC names) restricts what parquet files read, which is much faster on real
    7M-row months; timestamp columns are always kept.
    """
    path = Path(path)
    if not path.exists():
        raise DataSourceError(f"{path}: no such file")
    if path.is_dir():
        raise DataSourceError(f"{path}: is a folder; pass a file, or a folder with --month")
    if path.stat().st_size == 0:
        raise DataSourceError(f"{path}: the file is empty (0 bytes)")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        frame = _read_csv(path)
    else:
        if columns is not None:
            columns = [
                *columns,
                *(f"{p}{c}" for p in ("tpep_", "lpep_") for c in (PICKUP, DROPOFF)),
            ]
        frame = _read_parquet(path, columns)
    if frame.empty:
        raise DataSourceError(f"{path}: the file has no rows")
    taxi = detect_taxi_type(frame.columns)
    frame = to_canonical(frame, str(path))
    return TripMonth(frame=frame, source=str(path), month=month_from_name(path), taxi=taxi)


def resolve_trip_file(
    source: str | Path,
    month: str | None = None,
    taxi: str = "yellow",
    *,
    cache_dir: Path | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Turn a source into a local file.

    - a file: itself;
    - a folder: ``<folder>/{taxi}_tripdata_{month}.parquet`` (``month`` required);
    - an ``http(s)://`` base URL: that month's file, downloaded into ``cache_dir`` once.
    """
    if taxi not in ("yellow", "green"):
        raise DataSourceError(f"taxi type {taxi!r}: expected 'yellow' or 'green'")
    text = str(source)
    if text.startswith(("http://", "https://")):
        if month is None or cache_dir is None:
            raise DataSourceError(f"{text}: a URL source needs a month and a cache folder")
        return download_month(text, taxi, check_month(month), cache_dir, timeout_s)
    path = Path(text)
    if path.is_dir():
        if month is None:
            raise DataSourceError(f"{path}: is a folder; say which month (YYYY-MM) to read")
        candidates = [path / month_file_name(taxi, check_month(month))]
        candidates.append(candidates[0].with_suffix(".csv"))
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise DataSourceError(f"{path}: has no {candidates[0].name} (nor .csv)")
    if not path.exists():
        raise DataSourceError(f"{path}: no such file or folder")
    return path


def load_month(
    source: str | Path,
    month: str | None = None,
    taxi: str = "yellow",
    *,
    cache_dir: Path | None = None,
    timeout_s: float = 60.0,
    columns: list[str] | None = None,
) -> TripMonth:
    """Resolve ``source`` (file, folder or URL) and read it; see :func:`resolve_trip_file`."""
    path = resolve_trip_file(source, month, taxi, cache_dir=cache_dir, timeout_s=timeout_s)
    loaded = read_trip_file(path, columns=columns)
    if month is not None and loaded.month is None:
        loaded = TripMonth(loaded.frame, loaded.source, month, loaded.taxi)
    logger.info("loaded %s: %d rows", loaded.source, len(loaded.frame))
    return loaded
