"""The hot path's INSERT on the SQLite driver (shared/statedb/driver_insert.py): the rows it
writes read back exactly as SQLAlchemy's own INSERT writes them, and its errors are
SQLAlchemy's."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

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


def read(db: Database) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(ROWS.c.key, ROWS.c.value, ROWS.c.doc))]


def test_rows_read_back_as_sqlalchemys_own_insert_writes_them(tmp_path: Path) -> None:
    doc = {"zone": 161.0, "pickup": "2019-02-11 08:30:00", "nested": [1, None, "é"]}
    by_driver, by_sqlalchemy = database(tmp_path / "a"), database(tmp_path / "b")
    rows = [{"key": "r1", "value": 12.5, "doc": doc}, {"key": "r2", "value": -1.0, "doc": {}}]
    driver = DriverInsert.compile(sa.insert(ROWS), KEYS)
    with by_driver.write() as conn:
        driver.run(conn, rows)
    with by_sqlalchemy.write() as conn:
        conn.execute(sa.insert(ROWS), rows)
    assert read(by_driver) == read(by_sqlalchemy) == [("r1", 12.5, doc), ("r2", -1.0, {})]


def test_a_failed_statement_is_sqlalchemys_error_and_rolls_the_transaction_back(
    tmp_path: Path,
) -> None:
    db = database(tmp_path)
    driver = DriverInsert.compile(sa.insert(ROWS), KEYS)
    rows = [{"key": "x", "value": 1.0, "doc": {}}, {"key": "x", "value": 2.0, "doc": {}}]
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        driver.run(conn, rows)  # the first is written, then the unique key again
    assert read(db) == []


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
