from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from level3_deployment.prediction_log import PredictionLog, PredictionRecord


def record(key: str | None, variant: str = "blue", prediction: float = 10.0) -> PredictionRecord:
    return PredictionRecord(
        request_key=key,
        variant=variant,
        model_version="3",
        features={"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.1},
        prediction=prediction,
        latency_ms=1.5,
    )


#: each behaviour holds whether a request's rows commit a transaction of their own or go
#: through the process's journal (shared/statedb/journal.py), as the level-3 service logs them
BOTH_PATHS = pytest.mark.parametrize("journal", [False, True], ids=["transaction", "journal"])


@pytest.fixture(params=[False, True], ids=["transaction", "journal"])
def log(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PredictionLog]:
    log = PredictionLog(tmp_path / "p.db", journal=request.param)
    yield log
    log.close()


def test_feedback_joins_labels_to_predictions(log: PredictionLog) -> None:
    log.append([record("a", "blue", 10), record("b", "green", 20), record(None, "blue", 5)])
    assert log.record_feedback("a", 12.0) == 1
    assert log.record_feedback("b", 18.0) == 1
    assert log.record_feedback("zzz", 3.0) == 0  # no such prediction
    errors = log.labelled_errors()
    np.testing.assert_allclose(errors["blue"], [-2.0])
    np.testing.assert_allclose(errors["green"], [2.0])
    frame = log.frame()
    assert list(frame["request_key"][:2]) == ["a", "b"]
    assert frame["request_key"].isna().tolist() == [False, False, True]
    assert frame.loc[0, "PULocationID"] == 161 and frame.loc[0, "actual"] == 12.0


def test_shadow_errors_pair_ride_by_ride(log: PredictionLog) -> None:
    def shadow(key: str, prediction: float) -> PredictionRecord:
        return dataclasses.replace(record(key, "green", prediction), shadow=True)

    log.append([record("a", "blue", 10), shadow("a", 11), record("b", "blue", 20)])
    log.append([shadow("c", 30), record("d", "blue", 5), shadow("d", 4), shadow("b", 23)])
    for key, actual in (("a", 12.0), ("b", 21.0), ("c", 30.0), ("d", 6.0)):
        log.record_feedback(key, actual)
    # "c" has no blue answer: not a pair; each pair's two errors sit at the same index
    paired = log.labelled_errors(paired=True)
    np.testing.assert_allclose(paired["blue"], [-2.0, -1.0, -1.0])
    np.testing.assert_allclose(paired["green"], [-1.0, 2.0, -2.0])


def _writer(path: str, worker: int, n: int, journal: bool) -> None:
    log = PredictionLog(Path(path), journal=journal)
    for i in range(n):
        log.append([record(f"w{worker}-{i}")])


@BOTH_PATHS
def test_concurrent_writers_lose_nothing(tmp_path: Path, journal: bool) -> None:
    path = tmp_path / "p.db"
    PredictionLog(path)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 300, journal)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = PredictionLog(path)
    assert log.count() == 1200
    log.close()
    keys = {k for (k,) in sqlite3.connect(path).execute("SELECT request_key FROM predictions")}
    assert len(keys) == 1200


def _endless_writer(path: str, ready: mp.Event, journal: bool) -> None:
    log = PredictionLog(Path(path), journal=journal)
    i = 0
    while True:
        log.append([record(f"k-{i}")])
        i += 1
        if i == 50:
            ready.set()


@BOTH_PATHS
def test_a_killed_writer_leaves_every_committed_row_and_a_sound_database(
    tmp_path: Path, journal: bool
) -> None:
    path = tmp_path / "p.db"
    PredictionLog(path)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_endless_writer, args=(str(path), ready, journal))
    proc.start()
    assert ready.wait(30)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    reader = PredictionLog(path)
    reader.sync()  # the dead writer's journal, if it had one
    reader.close()  # and its checkpoint thread: a later test forks this process
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    keys = [k for (k,) in conn.execute("SELECT request_key FROM predictions ORDER BY id")]
    assert len(keys) >= 50
    assert keys == [f"k-{i}" for i in range(len(keys))]  # a prefix: no gaps, no duplicates
    after = PredictionLog(path)
    after.append([record("after")])  # still writable
    after.close()


def _inherited_writer(log: PredictionLog, worker: int, n: int) -> None:
    for i in range(n):
        log.append([record(f"inherited-{worker}-{i}")])


@BOTH_PATHS
def test_forked_workers_can_use_a_log_the_parent_already_used(
    tmp_path: Path, journal: bool
) -> None:
    """gunicorn forks workers from a master that may have touched the log."""
    log = PredictionLog(tmp_path / "p.db", journal=journal)
    log.append([record("from-the-parent")])  # the parent now holds an open connection
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_inherited_writer, args=(log, w, 200)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log.append([record("parent-again")])
    assert log.count() == 1 + 600 + 1
    log.close()


def test_an_old_log_gains_the_event_time_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE predictions (id INTEGER PRIMARY KEY, prediction_id TEXT NOT NULL UNIQUE,"
            " ts REAL NOT NULL, request_key TEXT, variant TEXT NOT NULL, shadow INTEGER NOT NULL"
            " DEFAULT 0, model_version TEXT NOT NULL, features TEXT NOT NULL, prediction REAL"
            " NOT NULL, latency_ms REAL NOT NULL);"
            "INSERT INTO predictions VALUES (1, 'a', 1.0, 'k', 'blue', 0, '1', '{}', 3.0, 1.0);"
        )
    log = PredictionLog(path)
    assert log.count() == 1
    log.append([record("k2")])
    assert log.count() == 2
    log.close()


def test_batch_feedback_reports_unknown_keys(log: PredictionLog) -> None:
    log.append([record("a"), record("b")])
    assert log.record_feedback_batch([("a", 5.0), ("zzz", 7.0), ("b", 6.0)]) == [1, 0, 1]
    errors = log.labelled_errors(actual_range=(1.0, 5.5))
    assert errors["blue"].tolist() == [5.0]


def test_first_label_wins_and_unknown_rides_store_nothing(log: PredictionLog) -> None:
    log.append([record("a"), record("a", "green", 11)])
    first, again, other, unknown = log.record_labels(
        [("a", 20.0), ("a", 20.0), ("a", 5.0), ("z", 1.0)]
    )
    assert (first.status, first.predictions) == ("stored", 2)
    assert again.status == "duplicate"
    assert (other.status, other.stored_actual) == ("conflict", 20.0)
    assert unknown.status == "unknown"
    log.append([record("z")])  # a later prediction for the refused label's ride
    frame = log.frame()
    assert frame.loc[frame.request_key == "a", "actual"].tolist() == [20.0, 20.0]
    assert frame.loc[frame.request_key == "z", "actual"].isna().all()
    # the A/B report reads the label copied onto the prediction, as monitoring does
    assert sum(len(e) for e in log.labelled_errors().values()) == 2


def test_a_reused_prediction_id_needs_the_same_request(tmp_path: Path) -> None:
    from level3_deployment.prediction_log import IdempotencyConflict

    log = PredictionLog(tmp_path / "p.db")
    row = record("a")
    log.append([row], request_digest="d1")
    log.append([row], request_digest="d1")  # a retry: kept once
    with pytest.raises(IdempotencyConflict):
        log.append([row], request_digest="d2")
    assert log.count() == 1
    log.close()
