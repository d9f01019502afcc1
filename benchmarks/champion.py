"""The champion's families across time: the course's recipe, hgb and hgb_ensemble at their
defaults, each trained on three real months, scored on the next (validation) and the one after
(test), for several windows of 2018-2020, in one run.

The level-2 figure (2019-01..03 -> 2019-04, test 2019-05) is one window; the ensemble's
settings were chosen on it, so the other windows say whether they hold on months nobody tuned
on. Then the ensemble's parts one at a time on the first window. Real months only (skipped
with a message without them).
Usage: python -m benchmarks.champion [--windows 2019-01..2019-03,2019-04,2019-05 ...] [--json]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import timeit
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "tlc-yellow-sample"
FAMILIES = ("linear", "hgb", "hgb_ensemble")
WINDOWS = (
    "2019-01..2019-03,2019-04,2019-05",
    "2018-01..2018-03,2018-04,2018-05",
    "2018-06..2018-08,2018-09,2018-10",
    "2019-06..2019-08,2019-09,2019-10",
    "2019-09..2019-11,2019-12,2020-01",
)


@dataclass(frozen=True)
class Score:
    window: str
    family: str
    val_rmse: float
    test_rmse: float
    fit_seconds: float
    #: one ride, one thread, median of 300 calls: the Pipeline and the served (compiled) form
    pipeline_ms: float
    served_ms: float
    served_by: str


def one_ride_ms(model: Any, rides: pd.DataFrame, native_dir: Path) -> tuple[float, float, str]:
    """One ride's median time through the Pipeline and through the served form (native code
    for trees, as the services build it)."""
    from shared.compiled import serving_model

    served = serving_model(model, native_dir=native_dir)
    frame = rides.iloc[:1]
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    times = []
    for predict, ride in ((model.predict, frame), (served.predict, columns)):
        runs = timeit.repeat(lambda p=predict, r=ride: p(r), number=1, repeat=300)
        times.append(statistics.median(runs) * 1000)
    return times[0], times[1], served.engine


def month(name: str) -> pd.DataFrame:
    from shared.data.sources import MonthSource, load_source
    from shared.data.validate import ValidationBounds, clean_trips

    trips = load_source(MonthSource(str(REAL), name)).trips.frame
    return clean_trips(trips, ValidationBounds(), month=name, source=name)[0]


#: the ensemble's parts, one at a time, on the first window
ABLATION: tuple[dict[str, Any], ...] = (
    {"n_models": 1, "recency": 0.0},
    {"n_models": 1},
    {"recency": 0.0},
)


def ablation(window: str) -> list[str]:
    from shared.features import split_xy
    from shared.models import fit_model, get_family

    train, val, test = window_months(window)
    spec = get_family("hgb_ensemble").spec
    lines = []
    for params in ABLATION:
        model = fit_model("hgb_ensemble", params, 0, *split_xy(train, spec))
        val_rmse, test_rmse = (scored(model, spec, f) for f in (val, test))
        lines.append(f"hgb_ensemble {params}: val {val_rmse:.3f}  test {test_rmse:.3f}")
    return lines


def scored(model: Any, spec: Any, frame: pd.DataFrame) -> float:
    from shared.evaluate import rmse
    from shared.features import split_xy

    X, y = split_xy(frame, spec)
    return rmse(y, model.predict(X))


def window_months(window: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train_months, val_month, test_month = window.split(",")
    first, last = train_months.split("..")
    names = [str(p) for p in pd.period_range(first, last, freq="M")]
    train = pd.concat([month(m) for m in names], ignore_index=True)
    return train, month(val_month), month(test_month)


def score_window(window: str, native_dir: Path) -> list[Score]:
    from shared.features import split_xy
    from shared.models import fit_model, get_family

    train, val, test = window_months(window)
    scores = []
    for family in FAMILIES:
        spec = get_family(family).spec
        started = time.perf_counter()
        model = fit_model(family, None, 0, *split_xy(train, spec))
        took = time.perf_counter() - started
        val_rmse, test_rmse = (scored(model, spec, f) for f in (val, test))
        timing = one_ride_ms(model, split_xy(val, spec)[0], native_dir)
        scores.append(Score(window, family, val_rmse, test_rmse, took, *timing))
    return scores


def line(score: Score, recipe: Score) -> str:
    gain_val = 1 - score.val_rmse / recipe.val_rmse
    gain_test = 1 - score.test_rmse / recipe.test_rmse
    return (
        f"{score.window:<34} {score.family:<13} val {score.val_rmse:.3f} ({gain_val:+.1%})  "
        f"test {score.test_rmse:.3f} ({gain_test:+.1%})  fit {score.fit_seconds:.1f} s  "
        f"one ride: Pipeline {score.pipeline_ms:.2f} ms, {score.served_by} {score.served_ms:.3f} ms"
    )


@click.command()
@click.option(
    "--windows",
    "windows",
    multiple=True,
    default=WINDOWS,
    show_default=True,
    help="TRAIN_FIRST..TRAIN_LAST,VAL,TEST (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def main(windows: tuple[str, ...], as_json: bool) -> None:
    if not any(REAL.glob("yellow_tripdata_2019-*.parquet")):
        click.echo(f"benchmarks.champion skipped: no real TLC months at {REAL}")
        return
    every = []
    with tempfile.TemporaryDirectory(prefix="taxi-bench-native-") as native_dir:
        for window in windows:
            scores = score_window(window, Path(native_dir))
            every += scores
            for score in scores:
                click.echo(line(score, scores[0]))
    wins = sum(
        s.val_rmse < h.val_rmse and s.test_rmse < h.test_rmse
        for s, h in zip(every[2::3], every[1::3], strict=True)
    )
    click.echo(f"hgb_ensemble below hgb on both months in {wins} of {len(windows)} windows")
    click.echo(f"the ensemble's parts on {windows[0]}:")
    for text in ablation(windows[0]):
        click.echo(f"  {text}")
    if as_json:
        click.echo(json.dumps({"scores": [asdict(s) for s in every]}))


if __name__ == "__main__":
    main()
