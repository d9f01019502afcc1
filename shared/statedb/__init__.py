"""The one state layer for the project's operational state: level 3's deployment generations
and prediction log, level 4's loop state, decisions, lock and alerts.

Written once on SQLAlchemy Core, so the same statements run on the embedded default (SQLite
files under ``TAXI_MLOPS_HOME``) and on PostgreSQL (``TAXI_MLOPS_STATE_DB_URL``) when several
machines must share it. Schema changes are Alembic revisions (``migrations/``), one branch per
store, so an existing SQLite home upgrades in place and a shared database holds all branches.
"""

from shared.statedb.database import Database, StateLocations, state_locations

__all__ = ["Database", "StateLocations", "state_locations"]
