"""The prediction journal (shared/statedb/journal.py): lines reach the table once, whole, and
only sealed files go away."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from level3_deployment.prediction_log import (
    IdempotencyConflict,
    PredictionLog,
    PredictionRecord,
    journal_directory,
)
from shared.statedb import journal as jr
from shared.statedb.database import StateUnavailable


def rows(n: int, tag: str = "r") -> list[dict[str, object]]:
    return [{"prediction_id": f"{tag}-{i}", "value": i + 0.5} for i in range(n)]


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{jr.SUFFIX}"))


def write_raw(directory: Path, data: bytes) -> None:
    """Bytes at the end of the directory's one journal file, as a writer mid-line leaves them."""
    (path,) = files(directory)
    with path.open("ab") as f:
        f.write(data)


def collect(directory: Path, **kwargs: bool) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    jr.ingest(directory, got.extend, **kwargs)
    return got


def test_each_line_is_ingested_once_and_a_live_file_stays(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(2, "a"))
    journal.append(rows(1, "b"))
    assert [r["prediction_id"] for r in collect(tmp_path)] == ["a-0", "a-1", "b-0"]
    assert collect(tmp_path) == []
    journal.append(rows(1, "c"))
    assert collect(tmp_path) == rows(1, "c")
    assert len(files(tmp_path)) == 1  # still this process's open file
    journal.close()
    assert collect(tmp_path) == [] and files(tmp_path) == []  # sealed, ingested, deleted
    journal.append(rows(1, "d"))  # a new file after close
    assert collect(tmp_path) == rows(1, "d")


def test_chunks_commit_with_their_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jr, "CHUNK_ROWS", 3)
    journal = jr.Journal(tmp_path)
    for i in range(4):
        journal.append(rows(2, f"l{i}"))
    batches: list[int] = []

    def write(chunk: list[dict[str, object]]) -> None:
        if len(batches) == 1:
            raise RuntimeError("the database went away")
        batches.append(len(chunk))

    with pytest.raises(RuntimeError):
        jr.ingest(tmp_path, write)
    assert batches == [4]  # two lines, then the failed chunk: nothing past the first chunk
    rest = collect(tmp_path)
    assert [r["prediction_id"] for r in rest] == ["l2-0", "l2-1", "l3-0", "l3-1"]


def test_a_torn_tail_of_a_sealed_file_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1, "whole"))
    journal.close()
    write_raw(tmp_path, b'[{"prediction_id": "torn')  # a write that never returned: never answered
    with caplog.at_level(logging.WARNING, logger=jr.__name__):
        assert collect(tmp_path) == rows(1, "whole")
    assert "never returned" in caplog.text
    assert files(tmp_path) == []
    assert (tmp_path / jr.QUARANTINE).read_bytes() == b'[{"prediction_id": "torn\n'  # kept


def test_a_line_that_does_not_parse_is_kept_aside(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1, "before"))
    write_raw(tmp_path, b"{not json\n")
    journal.append(rows(1, "after"))
    assert [r["prediction_id"] for r in collect(tmp_path)] == ["before-0", "after-0"]
    assert (tmp_path / jr.QUARANTINE).read_bytes() == b"{not json\n"
    assert collect(tmp_path) == []  # not retried


def test_a_line_still_being_written_waits(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1, "first"))
    write_raw(tmp_path, b'[{"prediction_id": "sec')
    assert collect(tmp_path) == rows(1, "first")
    write_raw(tmp_path, b'ond-0", "value": 0.5}]\n')
    assert collect(tmp_path) == rows(1, "second")


def test_a_short_write_is_cut_back_and_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1, "before"))
    (path,) = files(tmp_path)
    size = path.stat().st_size
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # what a full disk does
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(jr.os, "write", half)
    with pytest.raises(StateUnavailable, match="disk full"):
        journal.append(rows(3, "lost"))
    assert path.stat().st_size == size
    monkeypatch.setattr(jr.os, "write", real_write)
    journal.append(rows(1, "after"))
    assert [r["prediction_id"] for r in collect(tmp_path)] == ["before-0", "after-0"]


def test_one_ingest_pass_at_a_time(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1))
    fd = os.open(tmp_path / jr._LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's pass
        assert collect(tmp_path, wait=False) == []
    finally:
        os.close(fd)
    assert collect(tmp_path, wait=False) == rows(1)


def test_full_files_are_sealed_and_go_once_ingested(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path, rotate_bytes=1)  # a line a file
    for i in range(5):
        journal.append(rows(2, f"n{i}"))
    assert len(files(tmp_path)) == 5
    assert len(collect(tmp_path)) == 10
    assert len(files(tmp_path)) == 1  # the one this process still writes


def test_a_forked_child_writes_a_file_of_its_own(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1, "parent"))
    pid = os.fork()
    if pid == 0:  # the child: append, and exit without closing anything
        try:
            journal.append(rows(1, "child"))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert len(files(tmp_path)) == 2
    got = collect(tmp_path)
    assert sorted(r["prediction_id"] for r in got) == ["child-0", "parent-0"]
    # the dead child's file is gone; the parent's, which it still holds, stays
    assert len(files(tmp_path)) == 1
    journal.append(rows(1, "parent-again"))
    assert collect(tmp_path) == rows(1, "parent-again")


# ----------------------------------------------------------------- in the prediction log


def record(key: str) -> PredictionRecord:
    features = {"PULocationID": 161.0, "DOLocationID": 236.0, "trip_distance": 2.1}
    return PredictionRecord(key, "blue", "3", features, 10.0, 1.5)


def table_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


def test_rows_ingested_twice_are_kept_once(tmp_path: Path) -> None:
    """A pass that dies between its commit and its offset: the next one finds the rows."""
    log = PredictionLog(tmp_path / "p.db", journal=True)
    log.append([record("a"), record("b")])
    assert log.sync() == 2
    for offset in journal_directory(tmp_path / "p.db").glob("*.offset"):
        offset.unlink()
    assert log.sync() == 2  # read again...
    assert log.count() == 2  # ...and ignored by the table
    log.close()


def test_the_ingest_thread_brings_rows_in_without_a_reader(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    log = PredictionLog(path, journal=True)
    log.append([record("a")])
    deadline = time.monotonic() + 10
    while table_count(path) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert table_count(path) == 1
    log.close()


def test_a_request_with_an_id_commits_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    log = PredictionLog(path, journal=True)
    retried = record("a")
    log.append([retried], request_digest="d1")
    assert table_count(path) == 1  # in the table before the answer: its retry is checked there
    log.append([retried], request_digest="d1")
    with pytest.raises(IdempotencyConflict):
        log.append([retried], request_digest="d2")
    assert log.count() == 1
    log.close()


def test_closing_seals_and_ingests(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    log = PredictionLog(path, journal=True)
    log.append([record("a")])
    log.close()
    assert table_count(path) == 1
    assert files(journal_directory(path)) == []


def test_rows_the_table_refuses_are_kept_aside_and_the_rest_go_in(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    log = PredictionLog(path, journal=True)
    log.append([record("a")])
    assert log._journal is not None
    log._journal.append([{"prediction_id": "no-other-fields"}])
    log.append([record("b")])
    assert log.count() == 2
    quarantined = (journal_directory(path) / jr.QUARANTINE).read_text()
    assert "no-other-fields" in quarantined
    log.close()


def test_a_child_forked_during_a_pass_does_not_keep_its_lock(tmp_path: Path) -> None:
    journal = jr.Journal(tmp_path)
    journal.append(rows(1))
    read, write = os.pipe()
    ready_read, ready_write = os.pipe()
    child = 0

    def fork_mid_pass(chunk: list[dict[str, object]]) -> None:
        nonlocal child
        child = os.fork()
        if child == 0:  # a child that lives on, as a gunicorn worker would
            os.write(ready_write, b"r")  # past fork(), and its handlers
            os.read(read, 1)
            os._exit(0)

    jr.ingest(tmp_path, fork_mid_pass)
    os.read(ready_read, 1)
    try:
        assert collect(tmp_path, wait=False) == []  # the pass lock is free again: nothing new
        journal.append(rows(1, "later"))
        assert collect(tmp_path, wait=False) == rows(1, "later")
    finally:
        os.write(write, b"x")
        os.waitpid(child, 0)


def test_a_child_that_never_appends_does_not_hold_the_parents_file(tmp_path: Path) -> None:
    """gunicorn's master would be that parent, its workers the children."""
    journal = jr.Journal(tmp_path)
    journal.append(rows(1))
    read, write = os.pipe()
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(ready_write, b"r")
        os.read(read, 1)
        os._exit(0)
    os.read(ready_read, 1)
    try:
        journal.close()
        assert collect(tmp_path) == rows(1)
        assert files(tmp_path) == []  # sealed while the child lives on
    finally:
        os.write(write, b"x")
        os.waitpid(child, 0)


def test_lines_of_several_files_go_in_by_their_order_each_file_in_its_own(tmp_path: Path) -> None:
    """Two workers' files: the table's insertion order follows the rows' time across them."""
    first, second = jr.Journal(tmp_path), jr.Journal(tmp_path)
    for ts, journal in ((1.0, first), (2.0, second), (3.0, first), (4.0, second), (5.0, second)):
        journal.append([{"prediction_id": f"at-{ts}", "ts": ts}])
    got: list[dict[str, object]] = []
    jr.ingest(tmp_path, got.extend, order=lambda rows: float(rows[0]["ts"]))
    assert [r["ts"] for r in got] == [1.0, 2.0, 3.0, 4.0, 5.0]
    first.append([{"prediction_id": "late", "ts": 0.5}])  # an older time, written later
    got.clear()
    jr.ingest(tmp_path, got.extend, order=lambda rows: float(rows[0]["ts"]))
    assert [r["prediction_id"] for r in got] == ["late"]  # once, not lost behind the offsets
