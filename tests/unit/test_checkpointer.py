"""SQLite checkpoints off the request path (shared/statedb/checkpointer.py): a service's
group-commit connection leaves them to a thread of its own, which copies the log back into the
database; every other connection keeps SQLite's own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa

from shared.statedb import Database
from shared.statedb.checkpointer import THREAD_NAME


def autocheckpoint(conn: sa.Connection) -> int:
    """Read on the driver: through SQLAlchemy it would leave a transaction begun."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    return int(raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def checkpoint_threads(path: Path) -> list[threading.Thread]:
    """This database's checkpoint threads (other tests' services may have theirs running)."""
    name = f"{THREAD_NAME} {path}"
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def wait_for(condition, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def test_the_writer_connection_leaves_checkpoints_to_a_thread_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = Database(path, background_checkpoints=True)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
    assert not checkpoint_threads(path)  # not before a writer asks: gunicorn's master forks
    writer = db.writer_connection()
    assert autocheckpoint(writer) == 0 and len(checkpoint_threads(path)) == 1
    for i in range(300):
        with db.write(writer):
            writer.exec_driver_sql("INSERT INTO t VALUES (?)", (f"row {i} " + "x" * 200,))
    checkpointer = db.checkpointer
    assert checkpointer is not None
    assert wait_for(lambda: checkpointer.pages > 0)
    with db.read() as conn:  # the others keep SQLite's own checkpoints: the log stays bounded
        assert autocheckpoint(conn) == 1000
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 300
    writer.close()
    db.dispose()
    assert wait_for(lambda: not checkpoint_threads(path), 5.0)


def test_a_database_without_it_has_no_thread(tmp_path: Path) -> None:
    db = Database(tmp_path / "s.db")
    writer = db.writer_connection()
    assert autocheckpoint(writer) == 1000 and db.checkpointer is None
    assert not checkpoint_threads(tmp_path / "s.db")
    writer.close()


def test_a_postgresql_url_takes_no_checkpointer() -> None:
    db = Database("postgresql+psycopg2://u:p@127.0.0.1:9/none", background_checkpoints=True)
    assert db.checkpointer is None
