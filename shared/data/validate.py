"""Validate and clean trip records, counting every dropped row by the reason it was dropped.

Two kinds of drop are kept apart:
- *glitches* (missing values, impossible zones/distances/durations, pickups far outside the
  file's month): a data-quality problem. Too many of them fail the quality gate, so a month of
  garbage never reaches a model;
- ``duration_outside_target``: plausible trips outside the modelled 1-60 minute range (the
  course's filter). Slower traffic legitimately raises this count, so it does not count against
  quality.

Each row is counted under the first reason it fails, in the order of :data:`REASONS`, so the
counts add up to ``rows_in - rows_out``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU, REQUIRED_COLUMNS, TARGET
from shared.errors import DataQualityError, SchemaError, shown

logger = logging.getLogger(__name__)

REASONS: tuple[str, ...] = (
    "missing_value",
    "zone_out_of_range",
    "distance_out_of_range",
    "pickup_outside_month",
    "duration_not_positive",
    "duration_over_limit",
    "duration_outside_target",
)
GLITCH_REASONS: frozenset[str] = frozenset(REASONS) - {"duration_outside_target"}


@dataclass(frozen=True)
class ValidationBounds:
    """What counts as a valid trip and as a usable month. Defaults come from the real samples:
    real months lose 2-3 % of rows, nearly all to the 1-60 minute target range."""

    min_duration_min: float = 1.0
    max_duration_min: float = 60.0
    #: a "trip" longer than this is a meter left running, not traffic
    max_plausible_duration_min: float = 24 * 60.0
    #: the longest real sampled trip is 79 miles; an hour's drive cannot exceed this
    max_distance_miles: float = 100.0
    min_zone: int = 1
    max_zone: int = 265
    #: TLC files hold a few trips that started just before the month: keep those
    month_slack_hours: float = 24.0
    #: quality gate: share of glitch rows above which the whole month is refused
    max_glitch_fraction: float = 0.2
    #: quality gate: fewest clean rows worth training or evaluating on
    min_rows: int = 100
    #: the plausible pickup times, [first, last): TLC's records begin in 2009; a request or a
    #: row outside them is a typo or a placeholder (0001-01-01), not a trip
    first_pickup: str = "2009-01-01"
    last_pickup: str = "2100-01-01"


@dataclass
class ValidationReport:
    source: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    month: str | None = None

    @property
    def glitch_rows(self) -> int:
        return sum(n for reason, n in self.dropped.items() if reason in GLITCH_REASONS)

    @property
    def glitch_fraction(self) -> float:
        return self.glitch_rows / self.rows_in if self.rows_in else 0.0

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["glitch_fraction"] = round(self.glitch_fraction, 6)
        return out


#: A pickup time as the TLC and JSON clients write it: a calendar date of 2009-2099 (leap days
#: only in leap years: every year divisible by 4 is one in that range), optionally a time
#: (``T`` or a space), optionally UTC's designator. Anything else (``today``, ``NaT``, ``""``,
#: ``+05:00``, 2019-02-30) is refused rather than left to numpy, which reads ``"NaT"`` and
#: ``"today"`` as times. Digits are ``[0-9]``: ``\d`` would admit other scripts' digits. The
#: services' OpenAPI documents publish the same pattern.
_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = r"20(?:1[26]|[2468][048]|[3579][26])"
_TIME = r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?)?"
_STAMP = rf"(?:20(?:09|[1-9][0-9])-{_DAY}|{_LEAP_YEAR}-02-29){_TIME}"
_UTC = r"(?:Z|[+-]00:?00)?"
PICKUP_PATTERN = rf"^{_STAMP}{_UTC}$"
#: the same pattern, the time without its UTC designator as the first group: what numpy reads
#: (its ISO 8601 parser takes a space between date and time as it takes a "T")
_PICKUP = re.compile(rf"({_STAMP}){_UTC}")
#: the shape alone, to tell a malformed time from an impossible or implausible date
_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}" + _TIME + r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?")


@functools.lru_cache(maxsize=16)
def _pickup_window(first: str, last: str) -> tuple[np.datetime64, np.datetime64]:
    return np.datetime64(first, "s"), np.datetime64(last, "s")


@functools.lru_cache(maxsize=16)
def _pickup_window_scalar(first: str, last: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The window as datetimes; None when a bound is beyond what a datetime holds."""
    low, high = (stamp.item() for stamp in _pickup_window(first, last))
    if isinstance(low, dt.datetime) and isinstance(high, dt.datetime):
        return low, high
    return None


def _plausible(stamps: np.ndarray | np.datetime64, bounds: ValidationBounds) -> bool:
    """Every stamp inside the bounds' plausible pickup times."""
    if isinstance(stamps, np.datetime64):
        window = _pickup_window_scalar(bounds.first_pickup, bounds.last_pickup)
        if window is not None:
            # one request's time (years 2009-2099 by the pattern, so a datetime; NaT gives
            # None): compared as datetimes, a fifth of the time of numpy's scalar comparisons
            stamp = stamps.item()
            return isinstance(stamp, dt.datetime) and window[0] <= stamp < window[1]
    low, high = _pickup_window(bounds.first_pickup, bounds.last_pickup)
    return bool(np.all((stamps >= low) & (stamps < high)))


def parse_pickups(texts: list[Any], bounds: ValidationBounds) -> np.ndarray | None:
    """Many pickup times at once, as :func:`parse_pickup` would read each; None when any of
    them is not plainly valid (:func:`parse_pickup` then says which, and why)."""
    # each text matched once, its match kept: the time is read from it without a second pass
    matches = [_PICKUP.fullmatch(t) if type(t) is str else None for t in texts]
    if not all(matches):
        return None
    stamps = np.array([m[1] for m in matches if m], dtype="datetime64[s]")
    return stamps if _plausible(stamps, bounds) else None


def parse_pickup(text: str, bounds: ValidationBounds) -> np.datetime64:
    """One pickup time (UTC, to the second), or :class:`ValueError` saying what is wrong with
    it. The one date validator: the services' requests and their logs' event times use it.
    The pattern fixes the years to 2009-2099; ``bounds`` may narrow them."""
    match = _PICKUP.fullmatch(text)
    if match is None:
        if not _SHAPE.fullmatch(text):
            message = "is not an ISO 8601 UTC date-time (YYYY-MM-DDTHH:MM:SSZ)"
        else:
            message = "is not a UTC calendar date-time of 2009-2099"
        raise ValueError(f"{shown(text)} {message}")
    # the pattern admits only real calendar dates: numpy cannot refuse what is left
    stamp = np.datetime64(match[1], "s")
    if not _plausible(stamp, bounds):
        raise ValueError(
            f"{shown(text)} is outside the plausible {bounds.first_pickup}..{bounds.last_pickup}"
        )
    return stamp


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _timestamps(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if not pd.api.types.is_datetime64_any_dtype(values):
        # ISO 8601 stated, not inferred: inference warns (UserWarning) on unparseable text
        values = pd.to_datetime(values, errors="coerce", format="ISO8601")
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[us]")


def infer_month(pickups: np.ndarray) -> str | None:
    """The month most pickups fall in: the file's month when its name does not say."""
    valid = pickups[~np.isnat(pickups)]
    if valid.size == 0:
        return None
    months, counts = np.unique(valid.astype("datetime64[M]"), return_counts=True)
    return str(months[np.argmax(counts)])


def clean_trips(
    frame: pd.DataFrame,
    bounds: ValidationBounds,
    *,
    month: str | None = None,
    source: str = "<frame>",
) -> tuple[pd.DataFrame, ValidationReport]:
    """Drop invalid rows and add the target ``duration`` (minutes).

    Returns the clean frame (zones as int64, a fresh index) and a report with per-reason counts.
    ``month`` (YYYY-MM) is the file's month; when None it is inferred from the pickups.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"{source}: missing required column(s): {', '.join(missing)}")

    pickup = _timestamps(frame, PICKUP)
    dropoff = _timestamps(frame, DROPOFF)
    pu = _numeric(frame, PU)
    do = _numeric(frame, DO)
    distance = _numeric(frame, DISTANCE)
    duration = (dropoff - pickup) / np.timedelta64(1, "s") / 60.0

    month = month or infer_month(pickup)
    with np.errstate(invalid="ignore"):
        checks = [
            np.isnan(pu) | np.isnan(do) | np.isnan(distance) | np.isnan(duration),
            _bad_zone(pu, bounds) | _bad_zone(do, bounds),
            ~np.isfinite(distance) | (distance < 0) | (distance > bounds.max_distance_miles),
            _outside_month(pickup, month, bounds.month_slack_hours),
            duration <= 0,
            duration > bounds.max_plausible_duration_min,
            (duration < bounds.min_duration_min) | (duration > bounds.max_duration_min),
        ]
    # np.select picks the first true condition, so each row has exactly one reason.
    reason_code = np.select(checks, list(range(1, len(REASONS) + 1)), default=0)
    counts = np.bincount(reason_code, minlength=len(REASONS) + 1)
    dropped = {reason: int(counts[i + 1]) for i, reason in enumerate(REASONS) if counts[i + 1]}

    keep = reason_code == 0
    clean = frame.loc[keep].copy()
    clean[PU] = pu[keep].astype("int64")
    clean[DO] = do[keep].astype("int64")
    clean[DISTANCE] = distance[keep]
    clean[PICKUP] = pickup[keep]
    clean[DROPOFF] = dropoff[keep]
    clean[TARGET] = duration[keep]
    clean = clean.reset_index(drop=True)

    report = ValidationReport(
        source=source, rows_in=len(frame), rows_out=len(clean), dropped=dropped, month=month
    )
    logger.info(
        "%s: kept %d of %d rows; dropped %s", source, report.rows_out, report.rows_in, dropped
    )
    return clean, report


def _bad_zone(zone: np.ndarray, bounds: ValidationBounds) -> np.ndarray:
    return (zone < bounds.min_zone) | (zone > bounds.max_zone) | (zone != np.floor(zone))


def _outside_month(pickup: np.ndarray, month: str | None, slack_hours: float) -> np.ndarray:
    if month is None:
        return np.zeros(pickup.shape, dtype=bool)
    start = np.datetime64(month, "M").astype("datetime64[us]")
    end = (np.datetime64(month, "M") + 1).astype("datetime64[us]")
    slack = np.timedelta64(int(slack_hours * 3600), "s")
    return (pickup < start - slack) | (pickup >= end + slack)


def validate_month(
    frame: pd.DataFrame, bounds: ValidationBounds, *, month: str | None, source: str
) -> tuple[pd.DataFrame, ValidationReport]:
    """:func:`clean_trips`, then the quality gate: what every training step calls."""
    clean, report = clean_trips(frame, bounds, month=month, source=source)
    check_quality(report, bounds)
    return clean, report


def check_quality(report: ValidationReport, bounds: ValidationBounds) -> None:
    """Raise :class:`DataQualityError` if the month must not be used for training."""
    if report.glitch_fraction > bounds.max_glitch_fraction:
        worst = sorted(
            ((n, r) for r, n in report.dropped.items() if r in GLITCH_REASONS), reverse=True
        )
        detail = ", ".join(f"{r}: {n}" for n, r in worst)
        raise DataQualityError(
            f"{report.source}: {report.glitch_fraction:.0%} of rows are invalid ({detail}); "
            f"the limit is {bounds.max_glitch_fraction:.0%}. Refusing to use this data.",
            report,
        )
    if report.rows_out < bounds.min_rows:
        raise DataQualityError(
            f"{report.source}: only {report.rows_out} valid rows of {report.rows_in}; "
            f"at least {bounds.min_rows} are needed.",
            report,
        )
