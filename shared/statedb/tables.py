"""The state tables as SQLAlchemy Core sees them, for building statements. The DDL itself lives
in the Alembic revisions (``migrations/versions``), which these definitions must match."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()
FLOAT = sa.Float(53)
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON text on SQLite (read with json_extract), JSONB on PostgreSQL
FEATURES = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

deployment = sa.Table(
    "deployment",
    metadata,
    sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("ts", FLOAT, nullable=False),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.Text, nullable=False, unique=True),
    sa.Column("ts", FLOAT, nullable=False),
    sa.Column("request_key", sa.Text),
    sa.Column("variant", sa.Text, nullable=False),
    sa.Column("shadow", sa.Integer, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("features", FEATURES, nullable=False),
    sa.Column("prediction", FLOAT, nullable=False),
    sa.Column("latency_ms", FLOAT, nullable=False),
    sa.Column("event_time", sa.Text),
    sa.Column("actual", FLOAT),
    sa.Column("request_digest", sa.Text),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_key", sa.Text, primary_key=True),
    sa.Column("actual", FLOAT, nullable=False),
    sa.Column("ts", FLOAT, nullable=False),
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("ts", FLOAT, nullable=False),
    sa.Column("event_time", sa.Text),
    sa.Column("route", sa.Text, nullable=False),
    sa.Column("request_key", sa.Text),
    sa.Column("field", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

windows = sa.Table(
    "windows",
    metadata,
    sa.Column("start", sa.Text, primary_key=True),
    sa.Column("end", sa.Text, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("recorded_at", FLOAT, nullable=False),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("window_start", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("recorded_at", FLOAT, nullable=False),
)

loop_state = sa.Table(
    "loop_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.Text, nullable=False),
)


def insert_ignoring_duplicates(dialect: str, table: sa.Table, key: str) -> sa.Insert:
    """INSERT that keeps the row already stored under the unique ``key`` (a retry)."""
    from sqlalchemy.dialects import sqlite

    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=[key])


def upsert(dialect: str, table: sa.Table, key: str, columns: list[str]) -> sa.Insert:
    """INSERT, or replace ``columns`` of the row already stored under ``key``."""
    from sqlalchemy.dialects import sqlite

    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    return statement.on_conflict_do_update(
        index_elements=[key], set_={c: statement.excluded[c] for c in columns}
    )
