"""Foundation benchmarks (issue 2), baseline and candidate in the same run, printed as ratios.

1. the generator's throughput (rows/s) at 1M rows;
2. featurization of 1M rows: the course path (zones to str, ``to_dict(orient="records")``,
   DictVectorizer) against the project's TripFeaturizer, and a check that a LinearRegression
   fitted on either gives the same predictions;
3. level-1 training on a 7M-row month (the size of a real 2019 month): the course recipe
   (``shared.reference``) against ``taxi-mlops level1 train``'s code path, same files.

Usage: python -m benchmarks.foundation [--featurize-rows N] [--train-rows N] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression

from level1_devops.train import train_from_files
from shared import reference
from shared.data.generator import generate_month
from shared.data.schema import to_canonical
from shared.data.validate import ValidationBounds, clean_trips
from shared.features import BASELINE, TripFeaturizer
from shared.settings import get_settings

T = TypeVar("T")


def timed(func: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    gc.collect()
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - started


def bench_generator(rows: int) -> dict:
    _, seconds = timed(generate_month, "2019-01", rows, seed=1)
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}


def course_featurize(frame: pd.DataFrame, dv: DictVectorizer, fit: bool) -> sp.spmatrix:
    df = frame.copy()
    df[reference.CATEGORICAL] = df[reference.CATEGORICAL].astype(str)
    dicts = reference.to_dicts(df)
    return dv.fit_transform(dicts) if fit else dv.transform(dicts)


def bench_featurize(rows: int) -> dict:
    frame, _ = clean_trips(
        to_canonical(generate_month("2019-01", rows, seed=2), "bench"), ValidationBounds()
    )
    frame = frame[[*BASELINE.columns, "duration"]]
    holdout, _ = clean_trips(
        to_canonical(generate_month("2019-02", 100_000, seed=3), "bench"), ValidationBounds()
    )
    dv = DictVectorizer()
    X_course, course_s = timed(course_featurize, frame, dv, True)
    ours = TripFeaturizer()
    X_ours, ours_s = timed(ours.fit_transform, frame)
    # Same features: our matrix, columns reordered by name, equals DictVectorizer's exactly.
    names = list(ours.get_feature_names_out())
    order = [names.index(name) for name in dv.get_feature_names_out()]
    same_matrix = (X_ours[:, order] != X_course).nnz == 0
    # Same predictions: the course's fitted model, its coefficients mapped to our columns.
    y = frame["duration"].to_numpy()
    course_model = LinearRegression().fit(X_course, y)
    mapped = LinearRegression()
    mapped.coef_ = np.zeros(len(names))
    mapped.coef_[order] = course_model.coef_
    mapped.intercept_ = course_model.intercept_
    pred_course = course_model.predict(course_featurize(holdout, dv, False))
    pred_ours = mapped.predict(ours.transform(holdout))
    # For transparency: a model fitted separately on our matrix. sklearn's sparse solver
    # (lsqr) is iterative, so two fits agree only to its tolerance, most visibly on zones
    # never seen in training, where least squares has no unique answer.
    refit = LinearRegression().fit(X_ours, y).predict(ours.transform(holdout))
    return {
        "rows": len(frame),
        "course_seconds": course_s,
        "ours_seconds": ours_s,
        "speedup": course_s / ours_s,
        "identical_design_matrix": bool(same_matrix),
        "max_abs_prediction_diff_minutes": float(np.max(np.abs(pred_course - pred_ours))),
        "predictions_identical": bool(np.allclose(pred_course, pred_ours, rtol=0, atol=1e-9)),
        "separate_fit_max_diff_minutes": float(np.max(np.abs(pred_course - refit))),
        "separate_fit_rmse_between": float(np.sqrt(np.mean((pred_course - refit) ** 2))),
    }


def bench_train(rows: int, val_rows: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="taxi-bench-") as tmp:
        train_path = Path(tmp) / "yellow_tripdata_2019-01.parquet"
        val_path = Path(tmp) / "yellow_tripdata_2019-02.parquet"
        generate_month("2019-01", rows, seed=4).to_parquet(train_path)
        generate_month("2019-02", val_rows, seed=5).to_parquet(val_path)
        course, course_s = timed(reference.train_and_validate, train_path, val_path)
        ours, ours_s = timed(
            train_from_files,
            str(train_path),
            str(val_path),
            Path(tmp) / "m.joblib",
            ValidationBounds(),
        )
    return {
        "train_rows": rows,
        "val_rows": val_rows,
        "course_seconds": course_s,
        "ours_seconds": ours_s,
        "speedup": course_s / ours_s,
        "course_val_rmse": course["val_rmse"],
        "ours_val_rmse": ours["val_rmse"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator-rows", type=int, default=1_000_000)
    parser.add_argument("--featurize-rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=7_000_000)
    parser.add_argument("--val-rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    click.echo(f"generator: {args.generator_rows:,} rows ...")
    gen = bench_generator(args.generator_rows)
    click.echo(f"  {gen['rows_per_s']:,.0f} rows/s ({gen['seconds']:.2f} s)")

    click.echo(f"featurization: {args.featurize_rows:,} rows, course path vs TripFeaturizer ...")
    feat = bench_featurize(args.featurize_rows)
    click.echo(
        f"  course {feat['course_seconds']:.2f} s, ours {feat['ours_seconds']:.3f} s: "
        f"{feat['speedup']:.0f}x faster; same matrix: {feat['identical_design_matrix']}; "
        f"same predictions: {feat['predictions_identical']} "
        f"(max diff {feat['max_abs_prediction_diff_minutes']:.1e} min; separately fitted lsqr "
        f"models differ by up to {feat['separate_fit_max_diff_minutes']:.2f} min)"
    )

    click.echo(f"level-1 training: {args.train_rows:,}-row month, course recipe vs level 1 ...")
    train = bench_train(args.train_rows, args.val_rows)
    click.echo(
        f"  course {train['course_seconds']:.1f} s, level 1 {train['ours_seconds']:.1f} s: "
        f"{train['speedup']:.1f}x faster; val RMSE course {train['course_val_rmse']:.4f}, "
        f"level 1 {train['ours_val_rmse']:.4f}"
    )

    results = {"generator": gen, "featurize": feat, "train": train}
    out = args.out or get_settings().reports_dir / "bench" / "foundation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    feat_label = f"featurize {args.featurize_rows / 1e6:.2g}M rows (s)"
    train_label = f"level-1 train, {args.train_rows / 1e6:.2g}M rows (s)"
    click.echo(f"\n{'benchmark':<32}{'baseline':>12}{'ours':>12}{'ratio':>10}")
    click.echo(f"{'generator rows/s':<32}{'-':>12}{gen['rows_per_s']:>12,.0f}{'-':>10}")
    click.echo(
        f"{feat_label:<32}{feat['course_seconds']:>12.2f}"
        f"{feat['ours_seconds']:>12.3f}{feat['speedup']:>9.0f}x"
    )
    click.echo(
        f"{train_label:<32}{train['course_seconds']:>12.1f}"
        f"{train['ours_seconds']:>12.1f}{train['speedup']:>9.1f}x"
    )
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
