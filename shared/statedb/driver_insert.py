"""An INSERT that SQLAlchemy compiles once and the SQLite driver runs on every call.

A logged prediction is one INSERT on the serving hot path. Through SQLAlchemy's execution
path (parameter processing, result set-up) that costs ~30 us on top of SQLite's own ~20 us per
row, so a statement the hot path repeats is compiled once, here, and its rows handed straight to
the driver inside the driver's own transaction (``Database.driver_write``). The driver's errors
are wrapped as SQLAlchemy's own (``DBAPIError.instance``), so callers see one kind of error
either way. PostgreSQL keeps SQLAlchemy's path: its many-row INSERT becomes one statement there
(insertmanyvalues).

Many rows go in as few statements, each a block of rows in one multi-row ``VALUES``, not as
``executemany``: the driver releases the GIL around every statement it steps, so a journal
ingest of 2,000 rows by ``executemany`` handed the GIL to the serving threads and waited to get
it back 2,000 times, and the requests of its worker paid for those switches (measured in one
worker process: a one-ride level-3 request cost ~176 us while a pass ran, ~150 us with blocks).
Block sizes are powers of two, so a handful of statements, each prepared once, cover any
number of rows.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from shared.statedb.database import compact_json, sqlite_errors

#: the SQLite driver's connection, as ``Database.driver_write`` gives it to the block
DriverConnection: TypeAlias = sqlite3.Connection

#: rows in the largest block; SQLite's limit on a statement's parameters can make it smaller
MAX_BLOCK_ROWS = 512


@dataclass(frozen=True)
class DriverInsert:
    sql: str
    #: the row keys, in the statement's parameter order
    keys: tuple[str, ...]
    #: the keys whose values are stored as JSON text (SQLAlchemy's JSON type, done here)
    json_keys: frozenset[str]
    #: the statement for a block of n rows, by n (built on first use)
    _blocks: dict[int, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def compile(cls, statement: sa.Insert, keys: Sequence[str]) -> DriverInsert:
        """``statement`` (a SQLite INSERT) for rows with exactly ``keys``."""
        compiled = statement.compile(dialect=sqlite.dialect(), column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        if set(order) != set(keys):
            raise ValueError(f"the statement binds {order}, not the row keys {tuple(keys)}")
        sql = str(compiled)
        if sql.count(_values_group(len(order))) != 1:
            raise ValueError(f"the statement's VALUES is not one group of parameters: {sql}")
        table = statement.table
        json_keys = frozenset(k for k in order if isinstance(getattr(table.c, k).type, sa.JSON))
        return cls(sql, order, json_keys)

    def params(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        keys = self.keys
        encoded = [i for i, k in enumerate(keys) if k in self.json_keys]
        params = []
        for row in rows:
            param = list(map(row.__getitem__, keys))
            for i in encoded:
                param[i] = compact_json(param[i])
            params.append(tuple(param))
        return params

    def run(self, dbapi: DriverConnection, rows: Sequence[dict[str, Any]]) -> None:
        """The rows, in the transaction open on ``dbapi`` (:meth:`Database.driver_write`), in
        blocks of rows a statement."""
        params = self.params(rows)
        width = len(self.keys)
        flat = list(itertools.chain.from_iterable(params))  # a block is a slice of it
        with sqlite_errors(self.sql, params):
            for start, size in _blocks(len(params), _largest_block(dbapi, width)):
                dbapi.execute(self.block_sql(size), flat[start * width : (start + size) * width])

    def block_sql(self, rows: int) -> str:
        """The statement for ``rows`` rows at once (one ``VALUES`` group each)."""
        sql = self._blocks.get(rows)
        if sql is None:
            group = _values_group(len(self.keys))
            sql = self._blocks[rows] = self.sql.replace(group, ", ".join([group] * rows))
        return sql


def _values_group(width: int) -> str:
    return "(" + ", ".join(["?"] * width) + ")"


def _largest_block(dbapi: DriverConnection, width: int) -> int:
    """The largest power of two of rows, up to MAX_BLOCK_ROWS, whose parameters a statement
    may bind (SQLite builds before 3.32 allow 999, later ones 32,766)."""
    fits = max(1, dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // max(1, width))
    return min(MAX_BLOCK_ROWS, 1 << (fits.bit_length() - 1))


def _blocks(rows: int, largest: int) -> Iterator[tuple[int, int]]:
    """(start, size) of each block: as many of the largest as fit, then the rest by its
    binary digits."""
    start, size = 0, largest
    while start < rows:
        while size > rows - start:
            size //= 2
        yield start, size
        start += size


@dataclass(frozen=True)
class DriverScalar:
    """A one-value SELECT compiled once for the SQLite driver (``?`` parameters, in order)."""

    sql: str

    @classmethod
    def compile(cls, statement: sa.Select[Any]) -> DriverScalar:
        return cls(str(statement.compile(dialect=sqlite.dialect())))

    def run(self, dbapi: DriverConnection, params: tuple[Any, ...]) -> Any:
        """The first row's first value (None without a row), in ``dbapi``'s transaction."""
        with sqlite_errors(self.sql):
            found = dbapi.execute(self.sql, params).fetchone()
        return None if found is None else found[0]
