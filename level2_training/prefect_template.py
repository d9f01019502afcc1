"""A new home's Prefect database, copied from a migrated template.

On its first start in a home, Prefect's temporary server creates its SQLite database by running
every Alembic migration Prefect ships: ~12 of that start's ~19 CPU-s on a 2-core machine, where
a home that has its database starts on ~7.5. For one Prefect version the migrations always
give the same empty database, so it is made once per installed version (``prefect server
database upgrade``, in a scratch home), kept beside the interpreter like its bytecode, and
copied into each new home. Prefect finds that copy at its head revision and starts as in a used
home. Where the template cannot be made (a read-only installation, a failed upgrade), nothing
changes: Prefect migrates the new home itself, as before.

Only Prefect's default database is seeded (SQLite in PREFECT_HOME): a configured one, such as
the stack's PostgreSQL, is the user's.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy
import sqlalchemy.exc

logger = logging.getLogger(__name__)

#: where templates are kept: installation data, not project state (TAXI_MLOPS_HOME)
TEMPLATES = Path(sys.prefix) / "share" / "taxi-mlops"


def template_path(folder: Path, prefect_version: str) -> Path:
    return folder / f"prefect-{prefect_version}.db"


def upgrade_command() -> list[str]:
    """Prefect's own migration command, run in the interpreter that runs the server."""
    return [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]


def build_template(path: Path, command: list[str]) -> None:
    """Run ``command`` (the migrations) in a scratch Prefect home beside ``path``, then move
    the database it made to ``path``. Raises OSError, SubprocessError or SQLAlchemyError on
    failure. ``path``'s folder must exist."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".prefect-home-") as scratch:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_API_DATABASE", "PREFECT_SERVER_DATABASE"))
        }
        env["PREFECT_HOME"] = scratch
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=600)  # noqa: S603
        made = Path(scratch) / "prefect.db"
        _check_migrated(made)
        os.replace(made, path)


def _check_migrated(database: Path) -> None:
    """The database holds a whole schema: one row in alembic_version, in one file."""
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            query = "SELECT version_num FROM alembic_version"
            revision = connection.exec_driver_sql(query).scalar()
    finally:
        engine.dispose()
    if not revision:
        raise OSError(f"{database}: the migrations left no revision")


def seed_database(database: Path, template: Path, command: list[str]) -> bool:
    """Copy ``template`` to ``database`` if there is no database yet, making the template first
    if need be. True if the database was seeded; False if it existed or the template could not
    be made (Prefect then migrates it itself)."""
    if database.exists():
        return False
    try:
        if not template.exists():  # an image's template is read-only: no lock to take
            _build_once(template, command)
        database.parent.mkdir(parents=True, exist_ok=True)
        return _place(template, database)
    except (OSError, subprocess.SubprocessError, sqlalchemy.exc.SQLAlchemyError) as exc:
        logger.info("no Prefect database template (%s): Prefect migrates %s itself", exc, database)
        return False


def _place(template: Path, database: Path) -> bool:
    """A whole copy appears at ``database`` only if nothing is there yet: a server that another
    process started in this home meanwhile keeps its own database."""
    partial = database.with_name(f".{database.name}.{os.getpid()}")
    shutil.copyfile(template, partial)
    try:
        os.link(partial, database)  # unlike a rename, fails if the name exists
    except FileExistsError:
        return False
    finally:
        partial.unlink()
    return True


def _build_once(template: Path, command: list[str]) -> None:
    """Several processes may meet a new installation at once: one makes the template."""
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            build_template(template, command)


def default_database() -> Path | None:
    """Prefect's SQLite file in PREFECT_HOME, if that is the database in use (Prefect must be
    imported, with its settings final)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.server.database.connection_url
    database = settings.home / "prefect.db"
    in_use = url.get_secret_value() if url is not None else ""
    return database if in_use == f"sqlite+aiosqlite:///{database}" else None


def seed_default_database() -> bool:
    """Seed Prefect's default database for this installation's Prefect (see the module)."""
    database = default_database()
    if database is None:
        return False
    return seed_database(database, installation_template(), upgrade_command())


def installation_template() -> Path:
    import prefect

    return template_path(TEMPLATES, prefect.__version__)


if __name__ == "__main__":  # an image makes its template at build time (Dockerfile)
    made = installation_template()
    if not made.exists():
        _build_once(made, upgrade_command())
    sys.stdout.write(f"{made}\n")
