"""Alembic environment for the state database. Always run through
:meth:`shared.statedb.database.Database.migrate`, which passes a connection already inside the
migration's transaction (and lock); there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the state migrations through shared.statedb.Database.migrate")
# its own version table: the database may be shared with MLflow, whose Alembic history uses
# the default "alembic_version"
context.configure(
    connection=connection,
    target_metadata=None,
    transactional_ddl=True,
    version_table="taxi_mlops_state_version",
)
with context.begin_transaction():
    context.run_migrations()
