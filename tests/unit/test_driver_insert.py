"""The hot path's INSERT on the SQLite driver (shared/statedb/driver_insert.py), in the
driver's own transaction (Database.driver_write): the rows it writes read back exactly as
SQLAlchemy's own INSERT writes them, in their order, a few statements for many rows, its errors
are SQLAlchemy's, and a failure leaves nothing written."""

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
        driver.run(dbapi, rows)  # the unique key twice in one block
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


@pytest.mark.parametrize("count", [0, 1, 3, 511, 513, 1100])
def test_any_number_of_rows_reads_back_in_order_as_sqlalchemys_insert_writes_them(
    tmp_path: Path, count: int
) -> None:
    rows = [{"key": f"r{i:05d}", "value": i / 7, "doc": {"i": i}} for i in range(count)]
    by_driver, by_sqlalchemy = database(tmp_path / "a"), database(tmp_path / "b")
    with driver_transaction(by_driver) as dbapi:
        DriverInsert.compile(sa.insert(ROWS), KEYS).run(dbapi, rows)
    if rows:
        with by_sqlalchemy.write() as conn:
            conn.execute(sa.insert(ROWS), rows)
    with by_driver.read() as conn:  # the table's own order: ids as the rows were given
        order = [key for (key,) in conn.execute(sa.select(ROWS.c.key).order_by(ROWS.c.id))]
    assert order == [row["key"] for row in rows]
    assert read(by_driver) == read(by_sqlalchemy)


def statements(db: Database, rows: list[dict], variable_limit: int | None = None) -> list[str]:
    """The statements SQLite ran to insert ``rows`` (``variable_limit``: SQLite's limit on a
    statement's parameters, as an older build has it)."""
    ran: list[str] = []
    with driver_transaction(db) as dbapi:
        if variable_limit is not None:
            dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variable_limit)
        dbapi.set_trace_callback(ran.append)
        DriverInsert.compile(sa.insert(ROWS), KEYS).run(dbapi, rows)
        dbapi.set_trace_callback(None)
    return [sql for sql in ran if sql.startswith("INSERT")]


def test_many_rows_are_a_few_statements_not_one_a_row(tmp_path: Path) -> None:
    """The driver releases the GIL around each statement it runs: one a row (executemany)
    made a journal ingest hand it to the serving threads thousands of times a pass."""
    rows = [{"key": f"r{i}", "value": 1.0, "doc": {}} for i in range(2000)]
    ran = statements(database(tmp_path), rows)
    assert len(ran) == 7  # 512 + 512 + 512 + 256 + 128 + 64 + 16
    assert [sql.count("), (") + 1 for sql in ran] == [512, 512, 512, 256, 128, 64, 16]


def test_blocks_stay_inside_sqlites_limit_on_parameters(tmp_path: Path) -> None:
    db = database(tmp_path)
    rows = [{"key": f"r{i}", "value": 1.0, "doc": {}} for i in range(700)]
    ran = statements(db, rows, variable_limit=999)  # an older SQLite's limit: 333 rows of 3
    assert max(sql.count("), (") + 1 for sql in ran) == 256
    assert len(read(db)) == 700


def test_a_statement_whose_values_are_not_one_group_of_parameters_is_refused() -> None:
    # a value written into the SQL: a block could not repeat the group of parameters
    statement = sa.insert(ROWS).values(value=sa.literal_column("1.0"))
    with pytest.raises(ValueError, match="one group of parameters"):
        DriverInsert.compile(statement, ("key", "doc"))
