"""A new home's Prefect database is copied from a template made once (a stand-in for Prefect's
migrations here; the real ones in tests/integration/test_level2_flow.py)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from level2_training.prefect_template import (
    default_database,
    seed_database,
    template_path,
)

#: makes $PREFECT_HOME/prefect.db at a revision, and counts its runs in the file it is given
FAKE_UPGRADE = """
import os, sqlite3, sys
with open(sys.argv[1], "a") as runs:
    runs.write("x")
db = sqlite3.connect(os.path.join(os.environ["PREFECT_HOME"], "prefect.db"))
db.execute("CREATE TABLE alembic_version (version_num TEXT)")
db.execute("INSERT INTO alembic_version VALUES (?)", (sys.argv[2],))
db.commit()
"""


def upgrade(tmp_path: Path, revision: str = "head1") -> tuple[list[str], Path]:
    runs = tmp_path / "runs"
    return [sys.executable, "-c", FAKE_UPGRADE, str(runs), revision], runs


def revision(database: Path) -> str:
    connection = sqlite3.connect(database)
    try:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    finally:
        connection.close()


def test_new_homes_get_copies_of_one_template(tmp_path: Path) -> None:
    command, runs = upgrade(tmp_path)
    template = template_path(tmp_path / "share", "9.9.9")
    homes = [tmp_path / "a" / "prefect.db", tmp_path / "b" / "prefect.db"]
    assert [seed_database(db, template, command) for db in homes] == [True, True]
    assert runs.read_text() == "x"  # the migrations ran once
    assert [revision(db) for db in homes] == ["head1", "head1"]
    assert template.name == "prefect-9.9.9.db" and revision(template) == "head1"
    assert [p.name for p in homes[0].parent.iterdir()] == ["prefect.db"]  # no partial copy left


def test_a_home_with_a_database_keeps_it(tmp_path: Path) -> None:
    command, runs = upgrade(tmp_path)
    database = tmp_path / "prefect-home" / "prefect.db"
    database.parent.mkdir()
    database.write_bytes(b"the user's runs")
    assert seed_database(database, tmp_path / "t.db", command) is False
    assert database.read_bytes() == b"the user's runs" and not runs.exists()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-c", "raise SystemExit(3)"],  # the migrations failed
        [sys.executable, "-c", "pass"],  # they made no database
    ],
)
def test_without_a_template_prefect_migrates_the_home_itself(
    tmp_path: Path, command: list[str]
) -> None:
    database = tmp_path / "prefect-home" / "prefect.db"
    template = tmp_path / "share" / "prefect-1.db"
    assert seed_database(database, template, command) is False
    assert not database.exists() and not template.exists()
    assert not [p for p in template.parent.iterdir() if p.name.startswith(".prefect-home-")]


def test_a_template_folder_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    command, runs = upgrade(tmp_path)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    database = tmp_path / "prefect-home" / "prefect.db"
    assert seed_database(database, blocked / "prefect-1.db", command) is False
    assert not database.exists() and not runs.exists()


def test_only_prefects_default_database_is_seeded(tmp_path: Path) -> None:
    from prefect.settings import (
        PREFECT_API_DATABASE_CONNECTION_URL,
        PREFECT_HOME,
        temporary_settings,
    )

    with temporary_settings({PREFECT_HOME: tmp_path}):
        assert default_database() == tmp_path / "prefect.db"
    url = "postgresql+asyncpg://prefect:secret@db:5432/prefect"
    with temporary_settings({PREFECT_HOME: tmp_path, PREFECT_API_DATABASE_CONNECTION_URL: url}):
        assert default_database() is None


def test_a_template_made_at_build_time_is_copied_without_a_lock(tmp_path: Path) -> None:
    """In an image the template's folder is read-only: copying it takes no lock there."""
    command, runs = upgrade(tmp_path)
    template = template_path(tmp_path / "share", "1")
    assert seed_database(tmp_path / "first" / "prefect.db", template, command)
    template.with_suffix(".lock").unlink()
    template.with_suffix(".lock").mkdir()  # no lock file can be opened there any more
    database = tmp_path / "prefect-home" / "prefect.db"
    assert seed_database(database, template, command) is True
    assert revision(database) == "head1" and runs.read_text() == "x"


def test_a_database_made_meanwhile_is_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's server may create the home's database while the template is copied."""
    import shutil

    command, _ = upgrade(tmp_path)
    template = template_path(tmp_path / "share", "1")
    database = tmp_path / "prefect-home" / "prefect.db"
    real_copy = shutil.copyfile

    def copy_while_a_server_starts(source: Path, target: Path) -> Path:
        database.write_bytes(b"a live server's database")
        return real_copy(source, target)

    assert seed_database(tmp_path / "first" / "prefect.db", template, command)
    monkeypatch.setattr(
        "level2_training.prefect_template.shutil.copyfile", copy_while_a_server_starts
    )
    assert seed_database(database, template, command) is False
    assert database.read_bytes() == b"a live server's database"
    assert [p.name for p in database.parent.iterdir()] == ["prefect.db"]
