"""``taxi-mlops data``: the shared data layer from the command line."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import click

from shared.cli_options import rows_option, seed_option
from shared.cli_output import emit, fail, json_option
from shared.data.download import download_month
from shared.data.generator import Drift, fit_stats, generate_month
from shared.data.load import check_month, load_month, read_trip_file
from shared.data.validate import ValidationBounds, check_quality, clean_trips
from shared.errors import DataQualityError
from shared.settings import get_settings


@click.group()
def data() -> None:
    """Load, validate, download and generate TLC trip data."""


@data.command()
@click.argument("source")
@click.option("--month", help="YYYY-MM: required when SOURCE is a folder or URL.")
@click.option("--taxi", type=click.Choice(["yellow", "green"]), default="yellow", show_default=True)
@json_option
def validate(source: str, month: str | None, taxi: str) -> None:
    """Validate a trip file: rows in, rows out, and rows dropped by reason.

    Exits with code 2 if the file fails the quality gate (too many invalid rows).
    """
    settings = get_settings()
    loaded = load_month(
        source,
        month,
        taxi,
        cache_dir=settings.download_cache_dir,
        timeout_s=settings.download_timeout_s,
    )
    bounds = ValidationBounds()
    _, report = clean_trips(loaded.frame, bounds, month=loaded.month, source=loaded.source)
    payload = report.to_dict()
    try:
        check_quality(report, bounds)
    except DataQualityError as exc:
        fail(str(exc), payload)
    lines = [f"{report.source}: {report.rows_out} of {report.rows_in} rows are valid"]
    lines += [f"  dropped {n:>8} {reason}" for reason, n in report.dropped.items()]
    emit({"ok": True, **payload}, lines)


@data.command()
@click.option("--month", required=True, help="YYYY-MM of the trips.")
@rows_option(10_000, minimum=1)
@seed_option()
@click.option(
    "--speed-factor",
    type=float,
    default=1.0,
    show_default=True,
    help="Traffic speed multiplier: 0.6 makes trips 40% slower.",
)
@click.option(
    "--distance-factor", type=float, default=1.0, show_default=True, help="Trip length multiplier."
)
@click.option(
    "--zone-shift",
    type=float,
    default=0.0,
    show_default=True,
    help="0..1: shift the zone mix towards rarely used zones.",
)
@click.option(
    "--glitch-share",
    type=float,
    default=0.0,
    show_default=True,
    help="0..1: share of rows corrupted the ways real data is.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output parquet file [default: generated data folder, TLC file name].",
)
@json_option
def generate(
    month: str,
    rows: int,
    seed: int,
    speed_factor: float,
    distance_factor: float,
    zone_shift: float,
    glitch_share: float,
    out: Path | None,
) -> None:
    """Generate a month of TLC-shaped yellow-taxi trips."""
    check_month(month)
    drift = Drift(speed_factor, distance_factor, zone_shift, glitch_share)
    frame = generate_month(month, rows, seed=seed, drift=drift)
    out = out or get_settings().generated_data_dir / f"yellow_tripdata_{month}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(out)
    emit(
        {
            "ok": True,
            "path": str(out),
            "rows": rows,
            "month": month,
            "seed": seed,
            "drift": drift.__dict__,
        },
        [f"wrote {rows} trips for {month} to {out}"],
    )


@data.command()
@click.option("--month", required=True, help="YYYY-MM to download.")
@click.option("--taxi", type=click.Choice(["yellow", "green"]), default="yellow", show_default=True)
@json_option
def download(month: str, taxi: str) -> None:
    """Download one month from the TLC (TAXI_MLOPS_TLC_BASE_URL) into the local cache."""
    settings = get_settings()
    path = download_month(
        settings.tlc_base_url,
        taxi,
        check_month(month),
        settings.download_cache_dir,
        settings.download_timeout_s,
    )
    emit({"ok": True, "path": str(path), "bytes": path.stat().st_size}, [f"saved {path}"])


@data.command("fit-generator")
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@json_option
def fit_generator(data_dir: str, out: Path) -> None:
    """Refit the generator's statistics from real monthly files (aggregates only, no trips)."""
    files = sorted(glob.glob(str(Path(data_dir) / "*_tripdata_*.parquet")))
    if not files:
        fail(f"{data_dir}: no *_tripdata_*.parquet files")
    bounds = ValidationBounds()
    frames = []
    for path in files:
        loaded = read_trip_file(path)
        clean, _ = clean_trips(loaded.frame, bounds, month=loaded.month, source=loaded.source)
        frames.append(clean)
    stats = fit_stats(frames)
    out.write_text(json.dumps(stats, separators=(",", ":")))
    emit(
        {"ok": True, "path": str(out), "files": len(files), "rows": stats["fitted_on_rows"]},
        [f"fitted on {stats['fitted_on_rows']} trips from {len(files)} files -> {out}"],
    )
