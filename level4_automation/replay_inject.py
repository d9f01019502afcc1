"""What a replay replays: its months' trips, and the drift injected into them (pure).

See level4_automation/replay.py for the replay itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU
from shared.data.sources import GENERATED, MonthSource, load_source
from shared.data.validate import ValidationBounds, clean_trips
from shared.errors import ConfigError
from shared.evaluate import rmse as shared_rmse

#: a window under a day holds too few labels in a replay month to measure anything
MAX_WINDOWS_PER_MONTH = 28
#: monitoring cycles per replayed month by default (chosen by measurement: level4_automation/
#: README.md, "How often the loop looks")
DEFAULT_WINDOWS_PER_MONTH = 2
KINDS = {"slower": 1.4, "garbage": 0.3, "bad-candidate": 1.0}
_INJECTION = re.compile(r"^(\d{4}-\d{2}):([a-z-]+)(?:=([0-9.]+))?$")


@dataclass(frozen=True)
class Injection:
    """``slower[=F]``: from MONTH on, every trip takes F times as long (concept drift: the inputs
    do not change, only the answer). ``garbage[=S]``: in MONTH only, a share S of rides get an
    absurd distance or a negative duration. ``bad-candidate``: at MONTH, someone deploys a
    deliberately bad model (trained on shuffled durations) as a canary."""

    month: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Injection:
        found = _INJECTION.match(text.strip())
        if not found or found.group(2) not in KINDS:
            raise ConfigError(
                f"--inject-drift {text!r}: expected MONTH:KIND[=VALUE] with KIND one of "
                f"{', '.join(KINDS)} (e.g. 2019-06:slower=1.4)"
            )
        month, kind, value = found.groups()
        number = float(value) if value else KINDS[kind]
        if kind == "slower" and not 0.1 <= number <= 10:
            raise ConfigError(f"--inject-drift {text!r}: slower factor must be in 0.1..10")
        if kind == "garbage" and not 0 < number <= 1:
            raise ConfigError(f"--inject-drift {text!r}: garbage share must be in (0, 1]")
        return cls(month, kind, number)


@dataclass(frozen=True)
class ReplayConfig:
    months: list[str]
    out_dir: Path
    data_dir: str = GENERATED  # a folder of TLC files, or "generated"
    rows: int = 10_000  # generated months only
    injections: list[Injection] = field(default_factory=list)
    seed: int = 0
    policy_path: Path | None = None
    workers: int = 2
    #: monitoring cycles per month: labels arrive and the loop decides this often
    windows_per_month: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.windows_per_month <= MAX_WINDOWS_PER_MONTH:
            raise ConfigError(
                f"--windows-per-month {self.windows_per_month}: expected 1..{MAX_WINDOWS_PER_MONTH}"
            )
        if len(self.months) < 2:
            raise ConfigError("--months: a replay needs at least two months (train, then serve)")
        for injection in self.injections:
            if injection.month not in self.months[1:]:
                raise ConfigError(
                    f"--inject-drift {injection.month}: not one of the replayed months after "
                    f"the first ({self.months[1]}..{self.months[-1]})"
                )


def load_trips(config: ReplayConfig, month: str, index: int) -> pd.DataFrame:
    source = MonthSource(config.data_dir, month, rows=config.rows, seed=config.seed * 1000 + index)
    frame = load_source(source).trips.frame
    return frame[[PICKUP, DROPOFF, PU, DO, DISTANCE]].reset_index(drop=True)


def inject(frame: pd.DataFrame, month: str, injections: list[Injection], seed: int) -> pd.DataFrame:
    """Apply every injection active in ``month`` (``slower`` lasts; ``garbage`` is one month)."""
    out = frame.copy()
    for injection in injections:
        if injection.kind == "slower" and month >= injection.month:
            out[DROPOFF] = out[PICKUP] + (out[DROPOFF] - out[PICKUP]) * injection.value
        elif injection.kind == "garbage" and month == injection.month:
            rng = np.random.default_rng(seed)
            rows = rng.choice(len(out), size=int(len(out) * injection.value), replace=False)
            absurd, backwards = rows[: len(rows) // 2], rows[len(rows) // 2 :]
            out.loc[absurd, DISTANCE] = 5000.0
            out.loc[backwards, DROPOFF] = out.loc[backwards, PICKUP] - pd.Timedelta(minutes=10)
    return out


def window_edges(month: str, n: int) -> list[str]:
    """``n`` equal windows of ``month`` as n + 1 ISO times (whole seconds), first to last."""
    start = pd.Period(month, "M").start_time
    edges = pd.date_range(start, start + pd.offsets.MonthBegin(1), periods=n + 1).floor("s")
    return [t.strftime("%Y-%m-%dT%H:%M:%S") for t in edges]


def window_of(pickups: pd.Series, edges: list[str]) -> np.ndarray:
    """Which window each ride is streamed in: by its pickup time; rides before the first edge
    go in the first window, rides after the last edge (or with no time) in the last one."""
    cuts = pd.to_datetime(pd.Series(edges[1:-1]), format="%Y-%m-%dT%H:%M:%S").to_numpy()
    times = pd.to_datetime(pickups).to_numpy(dtype="datetime64[ns]")
    return np.searchsorted(cuts.astype("datetime64[ns]"), times, side="right")


def valid_mask(frame: pd.DataFrame, month: str, bounds: ValidationBounds) -> np.ndarray:
    """Rides inside the modelled problem (what RMSE is measured on, as in training)."""
    tagged = frame.assign(_row=np.arange(len(frame)))
    clean, _ = clean_trips(tagged, bounds, month=month, source=month)
    mask = np.zeros(len(frame), dtype=bool)
    mask[clean["_row"].to_numpy()] = True
    return mask


def durations(frame: pd.DataFrame) -> np.ndarray:
    return ((frame[DROPOFF] - frame[PICKUP]).dt.total_seconds() / 60.0).to_numpy()


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    ok = ~np.isnan(predicted)
    if not ok.any():
        return None
    return shared_rmse(actual[ok], predicted[ok])


def _clean_number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def ride_payloads(frame: pd.DataFrame, month: str) -> list[dict[str, Any] | None]:
    """One request body per ride (None where the ride has no pickup time to place it)."""
    pickups = frame[PICKUP].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()
    out: list[dict[str, Any] | None] = []
    for i, (pu, do, dist, pickup) in enumerate(
        zip(frame[PU].tolist(), frame[DO].tolist(), frame[DISTANCE].tolist(), pickups, strict=True)
    ):
        if not isinstance(pickup, str):
            out.append(None)
            continue
        out.append(
            {
                "ride_id": f"{month}:{i}",
                PU: _clean_number(int(pu) if pu == pu and pu is not None else None),
                DO: _clean_number(int(do) if do == do and do is not None else None),
                DISTANCE: _clean_number(float(dist) if dist is not None else None),
                "pickup_datetime": pickup,
            }
        )
    return out
