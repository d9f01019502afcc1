"""Background threads and fork() (shared/statedb/process_thread.py): a process never forks
while one of its background threads is inside SQLite, whose locks the child would inherit held
by a thread it does not have."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from shared.statedb import checkpointer, journal, process_thread
from shared.statedb.process_thread import outside_fork


def fork_and_reap() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_a_fork_waits_for_the_block_a_background_thread_is_in() -> None:
    inside, left = threading.Event(), []

    def background() -> None:
        with outside_fork():
            inside.set()
            time.sleep(0.3)
            left.append(time.monotonic())

    thread = threading.Thread(target=background)
    thread.start()
    assert inside.wait(5)
    fork_and_reap()
    forked = time.monotonic()
    thread.join()
    assert left and forked >= left[0]  # without the fork hook, fork() returns at once


def test_the_parent_and_the_child_can_enter_the_block_after_a_fork() -> None:
    fork_and_reap()
    with outside_fork():  # the parent's hook released it
        pass
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        acquired = process_thread._FORK_GUARD.acquire(timeout=2)
        os.write(write, b"1" if acquired else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"  # the child's copy was released too
    os.close(read)
    os.close(write)


def passes_of(thread: process_thread.ProcessThread, calls: list[bool]) -> list[bool]:
    """Run ``thread`` until it has made three calls (``calls`` records each), then stop it."""
    thread.ensure_running()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.stop()
    assert len(calls) >= 3
    return calls


class _Recording:
    """A stand-in connection that records whether a fork could happen during its calls."""

    def __init__(self, calls: list[bool]) -> None:
        self.calls = calls

    def execute(self, sql: str) -> _Recording:
        self.calls.append(process_thread._FORK_GUARD.locked())
        return self

    def fetchone(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def close(self) -> None:
        self.calls.append(process_thread._FORK_GUARD.locked())


def test_the_checkpoint_thread_works_outside_a_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(checkpointer.Checkpointer, "_connect", lambda self: _Recording(calls))
    thread = checkpointer.Checkpointer(tmp_path / "s.db", 1.0, interval_s=0.01)
    assert all(passes_of(thread, calls))


def test_the_ingest_thread_works_outside_a_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(
        journal, "ingest", lambda *a, **k: calls.append(process_thread._FORK_GUARD.locked())
    )
    thread = journal.Ingester(tmp_path, lambda rows: None, interval_s=0.01)
    assert all(passes_of(thread, calls))
