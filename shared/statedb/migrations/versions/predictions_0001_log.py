"""The prediction log: predictions (with the label copied on), labels, and refused input.

A log from before the state layer (created by hand-written DDL, with columns added by ALTERs as
they were introduced) is brought to the same shape: missing tables, columns and indexes are
added, and a label already stored is copied onto its predictions.

Revision ID: predictions_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "predictions_0001"
down_revision = None
branch_labels = ("predictions",)
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid alias
FLOAT = sa.Float(53)
FEATURES = sa.Text().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("feedback"):
        op.create_table(
            "feedback",
            sa.Column("request_key", sa.Text, primary_key=True),
            sa.Column("actual", FLOAT, nullable=False),
            sa.Column("ts", FLOAT, nullable=False),
        )
    if not inspector.has_table("predictions"):
        _create_predictions()
    else:
        _complete_legacy_predictions({c["name"] for c in inspector.get_columns("predictions")})
    if not inspector.has_table("rejections"):
        op.create_table(
            "rejections",
            sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
            sa.Column("ts", FLOAT, nullable=False),
            sa.Column("event_time", sa.Text),
            sa.Column("route", sa.Text, nullable=False),
            sa.Column("request_key", sa.Text),
            sa.Column("field", sa.Text, nullable=False),
            sa.Column("message", sa.Text, nullable=False),
        )
    _indexes(sa.inspect(op.get_bind()))


def _create_predictions() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.Text, nullable=False, unique=True),
        sa.Column("ts", FLOAT, nullable=False),
        sa.Column("request_key", sa.Text),
        sa.Column("variant", sa.Text, nullable=False),
        sa.Column("shadow", sa.Integer, nullable=False, server_default="0"),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("features", FEATURES, nullable=False),
        sa.Column("prediction", FLOAT, nullable=False),
        sa.Column("latency_ms", FLOAT, nullable=False),
        # the ride's pickup time (ISO 8601): monitoring windows follow event time
        sa.Column("event_time", sa.Text),
        # the label, copied on when it arrives: a window reads one table in order
        sa.Column("actual", FLOAT),
        # a digest of the request that logged the row: a reused X-Request-Id must be the
        # same request
        sa.Column("request_digest", sa.Text),
    )


def _complete_legacy_predictions(columns: set[str]) -> None:
    if "event_time" not in columns:
        op.add_column("predictions", sa.Column("event_time", sa.Text))
    if "actual" not in columns:
        op.add_column("predictions", sa.Column("actual", FLOAT))
        op.execute(
            "UPDATE predictions SET actual = (SELECT f.actual FROM feedback f"
            " WHERE f.request_key = predictions.request_key)"
            " WHERE request_key IN (SELECT request_key FROM feedback)"
        )
    if "request_digest" not in columns:
        op.add_column("predictions", sa.Column("request_digest", sa.Text))


def _indexes(inspector: sa.Inspector) -> None:
    wanted = {
        ("predictions", "predictions_key"): ["request_key"],
        ("predictions", "predictions_ts"): ["ts"],
        ("predictions", "predictions_event"): ["event_time"],
        ("rejections", "rejections_event"): ["event_time"],
    }
    for (table, name), columns in wanted.items():
        if name not in {i["name"] for i in inspector.get_indexes(table)}:
            op.create_index(name, table, columns)


def downgrade() -> None:
    for table in ("rejections", "feedback", "predictions"):
        op.drop_table(table)
