"""The hot path's INSERT on the SQLite driver (shared/statedb/driver_insert.py), in the
driver's own transaction (Database.driver_write): the rows it writes read back exactly as
SQLAlchemy's own INSERT writes them, its errors are SQLAlchemy's, and a failure leaves nothing
written."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shared.statedb import Database
from shared.statedb.driver_insert import DriverInsert

METADATA = sa.MetaData()
ROWS = sa.Table(
    "rows",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
)
KEYS = ("key", "value", "doc")


def database(tmp_path: Path) -> Database:
    db = Database(tmp_path / "s.db")
    with db.write() as conn:
        METADATA.create_all(conn)
    return db


@contextmanager
def driver_transaction(db: Database) -> Iterator[sqlite3.Connection]:
    """A writer's connection, kept (as the group commit keeps it), and a transaction on it."""
    held = db.writer_connection()
    try:
        with db.driver_write(held) as dbapi:
            yield dbapi
    finally:
        held.close()


def read(db: Database) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(ROWS.c.key, ROWS.c.value, ROWS.c.doc))]


def test_rows_read_back_as_sqlalchemys_own_insert_writes_them(tmp_path: Path) -> None:
    doc = {"zone": 161.0, "pickup": "2019-02-11 08:30:00", "nested": [1, None, "é"]}
    by_driver, by_sqlalchemy = database(tmp_path / "a"), database(tmp_path / "b")
    rows = [{"key": "r1", "value": 12.5, "doc": doc}, {"key": "r2", "value": -1.0, "doc": {}}]
    driver = DriverInsert.compile(sa.insert(ROWS), KEYS)
    with driver_transaction(by_driver) as dbapi:
        driver.run(dbapi, rows)
    with by_sqlalchemy.write() as conn:
        conn.execute(sa.insert(ROWS), rows)
    assert read(by_driver) == read(by_sqlalchemy) == [("r1", 12.5, doc), ("r2", -1.0, {})]


def test_a_failed_statement_is_sqlalchemys_error_and_rolls_the_transaction_back(
    tmp_path: Path,
) -> None:
    db = database(tmp_path)
    driver = DriverInsert.compile(sa.insert(ROWS), KEYS)
    rows = [{"key": "x", "value": 1.0, "doc": {}}, {"key": "x", "value": 2.0, "doc": {}}]
    with pytest.raises(sa.exc.IntegrityError), driver_transaction(db) as dbapi:
        driver.run(dbapi, rows)  # the first is written, then the unique key again
    assert read(db) == []


def test_a_driver_transaction_commits_and_the_connection_serves_the_next_one(
    tmp_path: Path,
) -> None:
    db = database(tmp_path)
    driver = DriverInsert.compile(sa.insert(ROWS), KEYS)
    held = db.writer_connection()
    try:
        for i in range(3):
            with db.driver_write(held) as dbapi:
                driver.run(dbapi, [{"key": f"r{i}", "value": float(i), "doc": {}}])
            assert not dbapi.in_transaction
        with pytest.raises(RuntimeError):
            insert_then_fail(db, held, driver)
        assert not dbapi.in_transaction
    finally:
        held.close()
    assert [key for key, _, _ in read(db)] == ["r0", "r1", "r2"]


def insert_then_fail(db: Database, held: Connection, driver: DriverInsert) -> None:
    with db.driver_write(held) as dbapi:
        driver.run(dbapi, [{"key": "gone", "value": 0.0, "doc": {}}])
        raise RuntimeError("the caller's own failure, after the insert")


def test_a_driver_transaction_is_sqlites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = database(tmp_path)
    held = db.writer_connection()
    monkeypatch.setattr(Database, "dialect", property(lambda self: "postgresql"))
    with pytest.raises(ValueError, match="SQLite"), db.driver_write(held):
        pass
    held.close()


def test_a_row_key_the_table_does_not_have_is_refused_when_it_is_compiled() -> None:
    with pytest.raises(ValueError, match="binds"):
        DriverInsert.compile(sa.insert(ROWS), (*KEYS, "not_a_column"))


def test_parameters_are_tuples_in_the_statements_order_for_any_number_of_keys() -> None:
    doc = {"zone": 161.0}
    full = DriverInsert.compile(sa.insert(ROWS), ("doc", "value", "key"))
    assert full.params([{"key": "r1", "value": 2.5, "doc": doc}]) == [
        tuple({"key": "r1", "value": 2.5, "doc": '{"zone":161.0}'}[k] for k in full.keys)
    ]
    one = DriverInsert(sql="INSERT INTO t (key) VALUES (?)", keys=("key",), json_keys=frozenset())
    assert one.params([{"key": "r1"}, {"key": "r2"}]) == [("r1",), ("r2",)]
