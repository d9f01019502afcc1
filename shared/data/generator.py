"""Synthetic TLC yellow-taxi months whose statistics follow the real samples, with drift knobs.

The generator samples from *aggregate* statistics fitted once from the real TLC samples
(:func:`fit_stats`, stored in ``generator_stats.json``; no trip record is stored):

- pickup day by weekday volume, pickup hour given weekday;
- pickup zone from the real zone mix; drop-off zone from the real destinations of that pickup
  zone (top pairs), blended with the city-wide drop-off mix;
- distance log-normal around the real median for that zone pair (or an additive zone model);
- speed log-normal: log(mph) = a + b*log(miles) + weekday-hour effect + pickup- and drop-off-zone
  effects, fitted by backfitting, so duration depends on distance, time and place as in NYC.

Drift knobs (:class:`Drift`) change the world the trips come from: slower or faster traffic,
longer trips, a shifted zone mix, and a share of glitch rows of the kinds validation catches.
"""

from __future__ import annotations

import calendar
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import DISTANCE, DO, PICKUP, PU, TARGET, YELLOW_COLUMNS

logger = logging.getLogger(__name__)

N_ZONES = 265
STATS_FILE = "generator_stats.json"
GLITCH_KINDS = (
    "negative_duration",
    "day_long_duration",
    "absurd_distance",
    "bad_zone",
    "null_value",
    "outside_month",
)
_TOP_PAIRS_PER_ZONE = 25
_MIN_PAIR_TRIPS = 3
_SHRINK = 20.0  # trips worth of prior weight pulling sparse zone effects towards zero


@dataclass(frozen=True)
class Drift:
    """How the generated month departs from the fitted world. Defaults: no drift."""

    speed_factor: float = 1.0  # 0.6 = traffic 40 % slower
    distance_factor: float = 1.0  # 1.3 = trips 30 % longer
    zone_shift: float = 0.0  # 0..1: blend of the zone mix towards rarely used zones
    glitch_share: float = 0.0  # 0..1: share of rows corrupted with a glitch

    def __post_init__(self) -> None:
        if not 0.05 <= self.speed_factor <= 20:
            raise ValueError(f"speed_factor={self.speed_factor}: expected 0.05..20")
        if not 0.05 <= self.distance_factor <= 20:
            raise ValueError(f"distance_factor={self.distance_factor}: expected 0.05..20")
        if not 0.0 <= self.zone_shift <= 1.0:
            raise ValueError(f"zone_shift={self.zone_shift}: expected 0..1")
        if not 0.0 <= self.glitch_share <= 1.0:
            raise ValueError(f"glitch_share={self.glitch_share}: expected 0..1")


# --------------------------------------------------------------------------- fitting


def _shrunk_group_mean(
    keys: np.ndarray, values: np.ndarray, size: int, shrink: float = _SHRINK
) -> np.ndarray:
    total = np.bincount(keys, weights=values, minlength=size)
    count = np.bincount(keys, minlength=size)
    return total / (count + shrink)


def fit_stats(frames: Iterable[pd.DataFrame]) -> dict[str, Any]:
    """Fit generator statistics from *validated* frames (see ``shared.data.validate``)."""
    df = pd.concat(list(frames), ignore_index=True)
    pickup = pd.DatetimeIndex(df[PICKUP])
    pu = df[PU].to_numpy(np.int64)
    do = df[DO].to_numpy(np.int64)
    dist = df[DISTANCE].to_numpy(np.float64)
    minutes = df[TARGET].to_numpy(np.float64)
    wh = pickup.weekday.to_numpy() * 24 + pickup.hour.to_numpy()
    moving = dist > 0
    still = minutes[~moving]
    return {
        "fitted_on_rows": len(df),
        **_volume_stats(pickup, pu, do),
        "destinations": _destinations(pu, do),
        "distance": _distance_stats(pu, do, dist),
        "speed": _speed_stats(pu[moving], do[moving], wh[moving], dist[moving], minutes[moving]),
        "still_minutes": {
            "log_mu": round(float(np.log(still).mean()), 5) if still.size else 1.5,
            "log_sigma": round(float(np.log(still).std()), 5) if still.size else 0.6,
        },
        "passenger_count": _shares(df.get("passenger_count"), range(0, 7)),
        "payment_type": _shares(df.get("payment_type"), range(1, 5)),
        "vendor": _shares(df.get("VendorID"), (1, 2)),
    }


def _rounded(values: np.ndarray, digits: int = 5) -> list[float]:
    return [round(float(v), digits) for v in np.ravel(values)]


def _volume_stats(pickup: pd.DatetimeIndex, pu: np.ndarray, do: np.ndarray) -> dict[str, Any]:
    """Trips per calendar day of each weekday, hour given weekday, and the zone mixes."""
    weekday = pickup.weekday.to_numpy()
    days = pd.Series(pickup.normalize()).drop_duplicates()
    days_per_weekday = np.bincount(pd.DatetimeIndex(days).weekday, minlength=7)
    weekday_volume = np.bincount(weekday, minlength=7) / np.maximum(days_per_weekday, 1)
    wh = weekday * 24 + pickup.hour.to_numpy()
    hour_given_weekday = np.bincount(wh, minlength=168).reshape(7, 24) + 1.0
    hour_given_weekday /= hour_given_weekday.sum(axis=1, keepdims=True)
    pu_mix = np.bincount(pu, minlength=N_ZONES + 1)[1:] + 0.5
    do_mix = np.bincount(do, minlength=N_ZONES + 1)[1:] + 0.5
    return {
        "weekday_volume": _rounded(weekday_volume / weekday_volume.sum()),
        "hour_given_weekday": [_rounded(row) for row in hour_given_weekday],
        "pu_mix": _rounded(pu_mix / pu_mix.sum(), 7),
        "do_mix": _rounded(do_mix / do_mix.sum(), 7),
    }


def _destinations(pu: np.ndarray, do: np.ndarray) -> dict[str, list[list[int]]]:
    """Each origin's most common destinations with their trip counts, then [0, n]: the n trips
    that went anywhere else (sampled from the drop-off mix minus the listed destinations)."""
    destinations: dict[str, list[list[int]]] = {}
    counts = pd.Series(pu * 1000 + do).value_counts()
    per_origin = np.bincount(pu, minlength=N_ZONES + 1)
    for key, n in counts.items():
        origin, dest = divmod(int(key), 1000)
        entry = destinations.setdefault(str(origin), [])
        if len(entry) < _TOP_PAIRS_PER_ZONE:
            entry.append([dest, int(n)])
    for zone, entry in destinations.items():
        entry.append([0, int(per_origin[int(zone)] - sum(n for _, n in entry))])
    return destinations


def _distance_stats(pu: np.ndarray, do: np.ndarray, dist: np.ndarray) -> dict[str, Any]:
    """Per-pair medians where a pair is common, an additive zone model otherwise."""
    moving = dist > 0
    logd = np.log(dist[moving])
    mu = float(logd.mean())
    # Distance depends strongly on the zone (airports, outer boroughs), so shrink lightly.
    pu_eff = _shrunk_group_mean(pu[moving], logd - mu, N_ZONES + 1, shrink=2.0)
    do_eff = _shrunk_group_mean(do[moving], logd - mu - pu_eff[pu[moving]], N_ZONES + 1, shrink=2.0)
    additive_resid = logd - mu - pu_eff[pu[moving]] - do_eff[do[moving]]
    pairs = pd.DataFrame({"key": (pu * 1000 + do)[moving], "logd": logd})
    grouped = pairs.groupby("key")["logd"].agg(["median", "count"])
    common = grouped[grouped["count"] >= _MIN_PAIR_TRIPS]
    pair_resid = pairs["logd"].to_numpy() - grouped["median"].reindex(pairs["key"]).to_numpy()
    in_common = pairs["key"].isin(common.index).to_numpy()
    return {
        "mu": round(mu, 5),
        "pu_effect": _rounded(pu_eff[1:]),
        "do_effect": _rounded(do_eff[1:]),
        "additive_sigma": round(float(additive_resid.std()), 5),
        "pair_median": {str(int(k)): round(float(v), 4) for k, v in common["median"].items()},
        "pair_sigma": round(float(pair_resid[in_common].std()), 5),
        "zero_share": round(float((~moving).mean()), 5),
    }


def _speed_stats(
    pu: np.ndarray, do: np.ndarray, wh: np.ndarray, dist: np.ndarray, minutes: np.ndarray
) -> dict[str, Any]:
    """Backfitting of log(mph) on log(miles), weekday-hour, pickup and drop-off zone, on the
    moving trips of at least 0.1 mile."""
    rows = dist >= 0.1
    log_speed = np.log(dist[rows] / (minutes[rows] / 60.0))
    x = np.log(dist[rows])
    keys_wh, keys_pu, keys_do = wh[rows], pu[rows], do[rows]
    eff_wh, eff_pu, eff_do = np.zeros(168), np.zeros(N_ZONES + 1), np.zeros(N_ZONES + 1)
    for _ in range(8):
        # Refit the distance slope on what the effects leave, so all terms are fitted jointly.
        b, a = np.polyfit(x, log_speed - eff_wh[keys_wh] - eff_pu[keys_pu] - eff_do[keys_do], 1)
        base = a + b * x
        eff_wh = _shrunk_group_mean(
            keys_wh, log_speed - base - eff_pu[keys_pu] - eff_do[keys_do], 168
        )
        eff_pu = _shrunk_group_mean(
            keys_pu, log_speed - base - eff_wh[keys_wh] - eff_do[keys_do], N_ZONES + 1
        )
        eff_do = _shrunk_group_mean(
            keys_do, log_speed - base - eff_wh[keys_wh] - eff_pu[keys_pu], N_ZONES + 1
        )
    speed_resid = log_speed - (a + b * x) - eff_wh[keys_wh] - eff_pu[keys_pu] - eff_do[keys_do]
    return {
        "intercept": round(float(a), 5),
        "log_distance_slope": round(float(b), 5),
        "weekday_hour_effect": _rounded(eff_wh),
        "pu_effect": _rounded(eff_pu[1:]),
        "do_effect": _rounded(eff_do[1:]),
        "sigma": round(float(speed_resid.std()), 5),
    }


def _shares(series: pd.Series | None, values: Iterable[int]) -> dict[str, float]:
    values = list(values)
    if series is None:
        return {str(v): 1.0 / len(values) for v in values}
    counts = pd.to_numeric(series, errors="coerce").value_counts()
    raw = np.array([counts.get(v, 0) for v in values], dtype=float) + 0.5
    return {str(v): round(float(s), 5) for v, s in zip(values, raw / raw.sum(), strict=True)}


@lru_cache(maxsize=4)
def load_stats(path: str | None = None) -> dict[str, Any]:
    """The fitted statistics: the packaged file by default."""
    if path is None:
        text = resources.files("shared.data").joinpath(STATS_FILE).read_text()
    else:
        text = Path(path).read_text()
    return json.loads(text)


# --------------------------------------------------------------------------- sampling


def _pickup_times(rng: np.random.Generator, n: int, month: str, stats: dict) -> np.ndarray:
    year, mon = (int(p) for p in month.split("-"))
    n_days = calendar.monthrange(year, mon)[1]
    first = np.datetime64(month, "D")
    weekdays = (np.arange(n_days) + calendar.weekday(year, mon, 1)) % 7
    day_p = np.asarray(stats["weekday_volume"])[weekdays]
    day = rng.choice(n_days, size=n, p=day_p / day_p.sum())
    hour_table = np.asarray(stats["hour_given_weekday"])
    cdf = np.cumsum(hour_table, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(n)
    hour = (u[:, None] > cdf[weekdays[day]]).sum(axis=1).clip(0, 23)
    seconds = hour * 3600 + rng.integers(0, 3600, size=n)
    return (first + day.astype("timedelta64[D]")).astype("datetime64[us]") + (
        seconds.astype("timedelta64[s]")
    )


def _zones(
    rng: np.random.Generator, n: int, stats: dict, zone_shift: float
) -> tuple[np.ndarray, np.ndarray]:
    pu_mix = np.asarray(stats["pu_mix"])
    do_mix = np.asarray(stats["do_mix"])
    if zone_shift:
        rare = pu_mix**0.25
        pu_mix = (1 - zone_shift) * pu_mix + zone_shift * rare / rare.sum()
        rare_do = do_mix**0.25
        do_mix = (1 - zone_shift) * do_mix + zone_shift * rare_do / rare_do.sum()
    zones = np.arange(1, N_ZONES + 1)
    pu = rng.choice(zones, size=n, p=pu_mix / pu_mix.sum())
    do = np.empty(n, dtype=np.int64)
    # A shifted zone mix also loosens habits: more trips go somewhere unusual.
    elsewhere_boost = 1.0 + 4.0 * zone_shift
    for origin in np.unique(pu):
        rows = np.flatnonzero(pu == origin)
        entries = stats["destinations"].get(str(origin), [[0, 1]])
        dest = np.array([e[0] for e in entries])
        weight = np.array([e[1] for e in entries], dtype=float)
        weight[dest == 0] *= elsewhere_boost
        pick = rng.choice(dest, size=rows.size, p=weight / weight.sum())
        other = pick == 0
        if other.any():
            rest = do_mix.copy()
            rest[dest[dest > 0] - 1] = 0.0
            pick[other] = rng.choice(zones, size=int(other.sum()), p=rest / rest.sum())
        do[rows] = pick
    return pu, do


def _distances(rng: np.random.Generator, pu: np.ndarray, do: np.ndarray, stats: dict) -> np.ndarray:
    d = stats["distance"]
    pu_eff = np.asarray(d["pu_effect"])
    do_eff = np.asarray(d["do_effect"])
    mu = d["mu"] + pu_eff[pu - 1] + do_eff[do - 1]
    sigma = np.full(pu.size, d["additive_sigma"])
    pair_median = pd.Series(d["pair_median"], dtype="float64")
    pair_median.index = pair_median.index.astype(np.int64)
    known = pair_median.reindex(pu * 1000 + do).to_numpy()
    has_pair = ~np.isnan(known)
    mu[has_pair] = known[has_pair]
    sigma[has_pair] = d["pair_sigma"]
    miles = np.exp(mu + sigma * rng.standard_normal(pu.size))
    miles[rng.random(pu.size) < d["zero_share"]] = 0.0
    return np.round(np.clip(miles, 0.0, 80.0), 2)


def _minutes(
    rng: np.random.Generator,
    miles: np.ndarray,
    pu: np.ndarray,
    do: np.ndarray,
    pickup: np.ndarray,
    stats: dict,
    speed_factor: float,
) -> np.ndarray:
    s = stats["speed"]
    ts = pd.DatetimeIndex(pickup)
    wh = ts.weekday.to_numpy() * 24 + ts.hour.to_numpy()
    safe = np.maximum(miles, 0.1)
    log_mph = (
        s["intercept"]
        + s["log_distance_slope"] * np.log(safe)
        + np.asarray(s["weekday_hour_effect"])[wh]
        + np.asarray(s["pu_effect"])[pu - 1]
        + np.asarray(s["do_effect"])[do - 1]
        + s["sigma"] * rng.standard_normal(miles.size)
    )
    mph = np.exp(log_mph) * speed_factor
    minutes = 60.0 * safe / mph
    still = miles == 0
    sm = stats["still_minutes"]
    minutes[still] = np.exp(sm["log_mu"] + sm["log_sigma"] * rng.standard_normal(still.sum()))
    return minutes


def _categorical(rng: np.random.Generator, shares: dict[str, float], n: int) -> np.ndarray:
    values = np.array([int(k) for k in shares])
    p = np.array(list(shares.values()))
    return rng.choice(values, size=n, p=p / p.sum())


def generate_month(
    month: str,
    rows: int,
    *,
    seed: int = 0,
    drift: Drift | None = None,
    stats: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``rows`` synthetic yellow-taxi trips for ``month`` (YYYY-MM), in the TLC yellow schema."""
    if rows < 1:
        raise ValueError(f"rows={rows}: expected at least 1")
    drift = drift or Drift()
    stats = stats or load_stats()
    rng = np.random.default_rng(seed)

    pickup = _pickup_times(rng, rows, month, stats)
    pu, do = _zones(rng, rows, stats, drift.zone_shift)
    miles = _distances(rng, pu, do, stats)
    miles = np.round(miles * drift.distance_factor, 2)
    minutes = _minutes(rng, miles, pu, do, pickup, stats, drift.speed_factor)
    dropoff = pickup + (minutes * 60e6).astype("timedelta64[us]")

    payment = _categorical(rng, stats["payment_type"], rows)
    fare = np.round(2.5 + 2.5 * miles + 0.35 * minutes, 1)
    tip = np.where(payment == 1, np.round(fare * rng.uniform(0.1, 0.3, rows), 2), 0.0)
    extra = np.where(
        (pd.DatetimeIndex(pickup).hour >= 20) | (pd.DatetimeIndex(pickup).hour < 6), 0.5, 0.0
    )
    congestion = np.full(rows, 2.5 if month >= "2019-02" else np.nan)
    frame = pd.DataFrame(
        {
            "VendorID": pd.array(_categorical(rng, stats["vendor"], rows), dtype="Int64"),
            "tpep_pickup_datetime": pickup,
            "tpep_dropoff_datetime": dropoff,
            "passenger_count": _categorical(rng, stats["passenger_count"], rows).astype(float),
            "trip_distance": miles,
            "RatecodeID": np.where(np.isin(do, (1, 132)), 2.0, 1.0),
            "store_and_fwd_flag": pd.array(
                np.where(rng.random(rows) < 0.01, "Y", "N"), dtype="string"
            ),
            "PULocationID": pd.array(pu, dtype="Int64"),
            "DOLocationID": pd.array(do, dtype="Int64"),
            "payment_type": pd.array(payment, dtype="Int64"),
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": np.full(rows, 0.5),
            "tip_amount": tip,
            "tolls_amount": np.zeros(rows),
            "improvement_surcharge": np.full(rows, 0.3),
            "total_amount": np.round(fare + extra + 0.5 + tip + 0.3 + np.nan_to_num(congestion), 2),
            "congestion_surcharge": congestion,
        },
        columns=list(YELLOW_COLUMNS),
    )
    if drift.glitch_share:
        _inject_glitches(rng, frame, drift.glitch_share)
    return frame


def _inject_glitches(rng: np.random.Generator, frame: pd.DataFrame, share: float) -> None:
    """Corrupt ``share`` of the rows in place, each with one kind from :data:`GLITCH_KINDS`."""
    rows = np.flatnonzero(rng.random(len(frame)) < share)
    kinds = rng.integers(0, len(GLITCH_KINDS), size=rows.size)
    pickup = frame["tpep_pickup_datetime"].to_numpy().copy()
    dropoff = frame["tpep_dropoff_datetime"].to_numpy().copy()
    for code, kind in enumerate(GLITCH_KINDS):
        idx = rows[kinds == code]
        if not idx.size:
            continue
        if kind == "negative_duration":
            dropoff[idx] = pickup[idx] - rng.integers(1, 120, idx.size).astype("timedelta64[m]")
        elif kind == "day_long_duration":
            dropoff[idx] = pickup[idx] + rng.integers(25, 72, idx.size).astype("timedelta64[h]")
        elif kind == "absurd_distance":
            frame.loc[idx, "trip_distance"] = rng.uniform(1e4, 5e4, idx.size).round(2)
        elif kind == "bad_zone":
            frame.loc[idx, "PULocationID"] = rng.choice([0, 999], idx.size)
        elif kind == "null_value":
            frame.loc[idx, "DOLocationID"] = pd.NA
        elif kind == "outside_month":
            shift = rng.integers(400, 4000, idx.size).astype("timedelta64[D]")
            pickup[idx] -= shift
            dropoff[idx] -= shift
    frame["tpep_pickup_datetime"] = pickup
    frame["tpep_dropoff_datetime"] = dropoff
