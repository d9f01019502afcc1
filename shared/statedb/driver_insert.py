"""An INSERT that SQLAlchemy compiles once and the SQLite driver runs on every call.

A logged prediction is one INSERT on the serving hot path. Through SQLAlchemy's execution
path (parameter processing, result set-up) that costs ~30 us on top of SQLite's own ~20 us per
row, so a statement the hot path repeats is compiled once, here, and its rows handed straight to
the driver (``executemany``) inside the driver's own transaction (``Database.driver_write``).
The driver's errors are wrapped as SQLAlchemy's own (``DBAPIError.instance``), so callers see
one kind of error either way. PostgreSQL keeps SQLAlchemy's path: its many-row INSERT becomes
one statement there (insertmanyvalues), which a driver ``executemany`` would send row by row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from shared.statedb.database import compact_json, sqlite_errors

#: the SQLite driver's connection, as ``Database.driver_write`` gives it to the block
DriverConnection: TypeAlias = sqlite3.Connection


@dataclass(frozen=True)
class DriverInsert:
    sql: str
    #: the row keys, in the statement's parameter order
    keys: tuple[str, ...]
    #: the keys whose values are stored as JSON text (SQLAlchemy's JSON type, done here)
    json_keys: frozenset[str]

    @classmethod
    def compile(cls, statement: sa.Insert, keys: Sequence[str]) -> DriverInsert:
        """``statement`` (a SQLite INSERT) for rows with exactly ``keys``."""
        compiled = statement.compile(dialect=sqlite.dialect(), column_keys=list(keys))
        order = tuple(compiled.positiontup or ())
        if set(order) != set(keys):
            raise ValueError(f"the statement binds {order}, not the row keys {tuple(keys)}")
        table = statement.table
        json_keys = frozenset(k for k in order if isinstance(getattr(table.c, k).type, sa.JSON))
        return cls(str(compiled), order, json_keys)

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
        """The rows, in the transaction open on ``dbapi`` (:meth:`Database.driver_write`)."""
        params = self.params(rows)
        with sqlite_errors(self.sql, params):
            dbapi.executemany(self.sql, params)


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
