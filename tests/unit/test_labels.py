"""Labels for many rides at once (level3_deployment/labels.py): the first-label-wins rule holds
label by label, across the chunks a large batch is read in, in a few statements per chunk."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from level3_deployment.labels import CHUNK
from level3_deployment.prediction_log import PredictionLog
from tests.unit.test_prediction_log import record


def test_a_batch_larger_than_a_chunk_keeps_each_labels_outcome_in_order(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    rides = [f"r{i}" for i in range(2 * CHUNK + 7)]
    log.append([record(ride) for ride in rides] + [record("r3", "green")])
    log.record_labels([("r5", 1.0)])  # labelled before the batch
    batch = [(ride, 9.0) for ride in rides]  # r5 now conflicts with its stored 1.0
    batch += [("ghost", 2.0), ("r3", 9.0), ("r4", 8.0), ("ghost", 2.0)]
    outcomes = log.record_labels(batch)
    assert [o.status for o in outcomes[:6]] == ["stored"] * 5 + ["conflict"]
    assert outcomes[3].predictions == 2  # both of r3's predictions carry the label
    assert (outcomes[5].predictions, outcomes[5].stored_actual) == (1, 1.0)
    assert all(o.status == "stored" and o.predictions == 1 for o in outcomes[6 : len(rides)])
    tail = [(o.status, o.predictions, o.stored_actual) for o in outcomes[len(rides) :]]
    unknown = ("unknown", 0, None)
    assert tail == [unknown, ("duplicate", 2, 9.0), ("conflict", 1, 9.0), unknown]
    frame = log.frame()
    assert frame.set_index("request_key")["actual"].drop("r5").eq(9.0).all()
    assert frame.loc[frame.request_key == "r5", "actual"].tolist() == [1.0]
    log.close()


def test_a_large_batch_takes_a_few_statements_per_chunk_not_several_per_label(
    tmp_path: Path,
) -> None:
    log = PredictionLog(tmp_path / "p.db")
    rides = [f"r{i}" for i in range(4 * CHUNK)]
    log.append([record(ride) for ride in rides])
    statements: list[str] = []
    sa.event.listen(log.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    outcomes = log.record_labels([(ride, 5.0) for ride in rides] + [("ghost", 1.0)] * CHUNK)
    assert sum(o.status == "stored" for o in outcomes) == len(rides)
    # known rides, kept labels and counts: a SELECT per chunk each; the insert and the copy
    # onto predictions are one statement per many rows each
    assert len(statements) <= 3 * 5 + 2 * 4, statements[:5]
    log.close()


def test_event_times_are_read_for_many_rides_at_once(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db")
    early, later, none = record("a"), record("a"), record("b")
    early.features["pickup_datetime"] = "2019-03-02T10:00:00"
    later.features["pickup_datetime"] = "2019-03-05T10:00:00"
    log.append([later, early, none])
    times = log.event_times_of(["a", "b", "ghost"] + [f"x{i}" for i in range(CHUNK)])
    assert times == {"a": "2019-03-02T10:00:00"}  # the ride's first; none for "b" or "ghost"
    log.close()
