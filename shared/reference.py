"""The course's recipe, kept as written, as the baseline every comparison is measured against.

Read a month, compute duration, keep 1-60 minutes, cast the zones to str, turn rows into dicts,
DictVectorizer + LinearRegression. Tests check the project's level 1 against it and the
benchmarks time the project's featurization against it; nothing else should use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

CATEGORICAL = ["PULocationID", "DOLocationID"]
NUMERICAL = ["trip_distance"]


def read_dataframe(path: str | Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df["duration"] = df.tpep_dropoff_datetime - df.tpep_pickup_datetime
    df.duration = df.duration.apply(lambda td: td.total_seconds() / 60)
    df = df[(df.duration >= 1) & (df.duration <= 60)]
    df[CATEGORICAL] = df[CATEGORICAL].astype(str)
    return df


def to_dicts(df: pd.DataFrame) -> list[dict]:
    return df[CATEGORICAL + NUMERICAL].to_dict(orient="records")


def train_and_validate(train_path: str | Path, val_path: str | Path) -> dict[str, float]:
    """The course notebook's numbers: validation RMSE on the next month, and row counts."""
    df_train, df_val = read_dataframe(train_path), read_dataframe(val_path)
    dv = DictVectorizer()
    X_train = dv.fit_transform(to_dicts(df_train))
    X_val = dv.transform(to_dicts(df_val))
    lr = LinearRegression()
    lr.fit(X_train, df_train.duration.values)
    y_pred = lr.predict(X_val)
    return {
        "val_rmse": float(root_mean_squared_error(df_val.duration.values, y_pred)),
        "train_rows": len(df_train),
        "val_rows": len(df_val),
        "val_pred_mean": float(np.mean(y_pred)),
    }
