"""Group commit (shared/statedb/group_commit.py) and SQLite's writer queue
(Database.write): concurrent writes share transactions, each caller gets its own outcome, and
writers of one SQLite file wait their turn on a lock file instead of failing or sleeping."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.statedb import Database
from shared.statedb.database import StateUnavailable
from shared.statedb.group_commit import GroupCommit
from tests.concurrency import race

ITEMS = sa.table("items", sa.column("name"))


def database(path: Path, busy_timeout_s: float = 10.0) -> Database:
    db = Database(path, busy_timeout_s=busy_timeout_s)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY)")
    return db


def insert_all(conn: sa.Connection, names: list[str]) -> list[str]:
    conn.execute(sa.insert(ITEMS), [{"name": n} for n in names])
    return [n.upper() for n in names]


def stored(db: Database) -> list[str]:
    with db.read() as conn:
        return sorted(r[0] for r in conn.execute(sa.select(ITEMS.c.name)))


def submit_at_once(group: GroupCommit, names: list) -> dict[object, object]:
    """Every name submitted by a thread of its own, all released at once: each one's outcome."""
    return dict(zip(names, race(len(names), lambda i: group.submit(names[i])), strict=True))


def test_concurrent_writes_share_transactions_and_each_gets_its_result(tmp_path: Path) -> None:
    db = database(tmp_path / "s.db")
    group = GroupCommit(db, insert_all)
    names = [f"n{i}" for i in range(40)]
    outcome = submit_at_once(group, names)
    assert outcome == {n: n.upper() for n in names}
    assert stored(db) == sorted(names)
    assert group.writes == 40 and group.batches < 40  # some callers shared a commit


def test_one_callers_error_is_its_own_and_the_others_are_written(tmp_path: Path) -> None:
    db = database(tmp_path / "s.db")
    with db.write() as conn:
        conn.execute(sa.insert(ITEMS), [{"name": "taken"}])
    group = GroupCommit(db, insert_all)
    names = ["taken", *(f"n{i}" for i in range(15))]
    outcome = submit_at_once(group, names)
    assert isinstance(outcome["taken"], sa.exc.IntegrityError)
    assert all(outcome[n] == n.upper() for n in names[1:])
    assert stored(db) == sorted(names)  # every other write is there, exactly once


def test_an_unreachable_database_fails_every_waiting_write_at_once() -> None:
    db = Database("postgresql+psycopg2://taxi:pw@127.0.0.1:9/none")
    group = GroupCommit(db, insert_all)
    outcome = submit_at_once(group, ["a", "b", "c"])
    assert all(isinstance(v, StateUnavailable) for v in outcome.values()), outcome


def _hammer(path: str, prefix: str, n: int) -> None:
    db = Database(Path(path), busy_timeout_s=0.0)  # SQLite would fail at once if it waited
    threads = [
        threading.Thread(
            target=lambda t=t: [
                _insert(db, f"{prefix}-{t}-{i}") for i in range(n)
            ]
        )
        for t in range(4)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _insert(db: Database, name: str) -> None:
    with db.write() as conn:
        conn.execute(sa.insert(ITEMS), [{"name": name}])


def test_writers_in_several_processes_queue_instead_of_finding_the_database_locked(
    tmp_path: Path,
) -> None:
    """With SQLite's busy timeout at 0, a writer that found the lock taken would fail with
    "database is locked": the lock file makes each wait its turn (and wake at once)."""
    path = tmp_path / "s.db"
    database(path).dispose()
    context = mp.get_context("fork")
    workers = [context.Process(target=_hammer, args=(str(path), f"p{i}", 50)) for i in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(stored(Database(path))) == 3 * 4 * 50


@pytest.mark.parametrize("threads", [1, 8])
def test_a_group_commit_keeps_writes_of_a_request_whole(tmp_path: Path, threads: int) -> None:
    """A batch that fails part-way leaves nothing of itself: the retried writes are all there,
    the failed one not at all."""
    db = database(tmp_path / "s.db")
    group = GroupCommit(db, insert_all)

    def pair(conn: sa.Connection, items: list[tuple[str, str]]) -> list[int]:
        for first, second in items:
            conn.execute(sa.insert(ITEMS), [{"name": first}])
            if second == "boom":
                raise ValueError("the second half failed")
            conn.execute(sa.insert(ITEMS), [{"name": second}])
        return [2] * len(items)

    group = GroupCommit(db, pair)
    names = [(f"a{i}", "boom" if i == 3 else f"b{i}") for i in range(threads)]
    outcome = submit_at_once(group, names)  # type: ignore[arg-type]
    written = stored(db)
    for first, second in names:
        if second == "boom":
            assert isinstance(outcome[(first, second)], ValueError) and first not in written
        else:
            assert {first, second} <= set(written)


def test_the_leader_keeps_its_connection_and_replaces_it_after_a_failure(tmp_path: Path) -> None:
    """One connection serves every batch (no pool checkout per transaction); a batch that fails
    closes it, so a connection a restarted server left dead is never reused."""
    db = database(tmp_path / "s.db")
    checkouts: list[object] = []
    sa.event.listen(db.engine, "checkout", lambda dbapi, record, proxy: checkouts.append(dbapi))
    group = GroupCommit(db, insert_all)
    for name in ("a", "b", "c"):
        assert group.submit(name) == name.upper()
    assert len(checkouts) == 1
    with pytest.raises(sa.exc.IntegrityError):
        group.submit("a")
    assert group.submit("d") == "D"
    assert len(checkouts) == 2
    assert stored(db) == ["a", "b", "c", "d"]
