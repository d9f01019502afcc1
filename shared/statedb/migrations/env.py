"""Alembic environment for the state database. Always run through
:meth:`shared.statedb.database.Database.migrate`, which passes a connection already inside the
migration's transaction (and lock); there is no alembic.ini and no offline mode."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the state migrations through shared.statedb.Database.migrate")
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
