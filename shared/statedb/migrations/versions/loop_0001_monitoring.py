"""Level 4's records: the monitoring time series (a row per window), the decision audit log
(each with what became of its alert), and the loop's state between windows.

Revision ID: loop_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "loop_0001"
down_revision = None
branch_labels = ("loop",)
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FLOAT = sa.Float(53)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("windows"):
        op.create_table(
            "windows",
            sa.Column("start", sa.Text, primary_key=True),
            sa.Column("end", sa.Text, nullable=False),
            sa.Column("metrics", sa.Text, nullable=False),
            sa.Column("recorded_at", FLOAT, nullable=False),
        )
    if not inspector.has_table("decisions"):
        op.create_table(
            "decisions",
            sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
            sa.Column("window_start", sa.Text, nullable=False),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("rule", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("details", sa.Text, nullable=False),
            sa.Column("recorded_at", FLOAT, nullable=False),
        )
    if not inspector.has_table("loop_state"):
        op.create_table(
            "loop_state",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("state", sa.Text, nullable=False),
            sa.CheckConstraint("id = 1", name="loop_state_single_row"),
        )


def downgrade() -> None:
    for table in ("loop_state", "decisions", "windows"):
        op.drop_table(table)
