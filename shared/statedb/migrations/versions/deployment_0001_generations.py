"""Deployment generations: one row per change of which version is blue/green and how traffic
is split (append-only; the newest generation is the deployment).

A home from before the state layer already has this table: it is kept as it is.

Revision ID: deployment_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "deployment_0001"
down_revision = None
branch_labels = ("deployment",)
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("deployment"):
        return
    op.create_table(
        "deployment",
        sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("ts", sa.Float(53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployment")
