from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.settings import Settings
from shared.statedb import Database, state_locations


def test_the_embedded_default_is_one_sqlite_file_per_store(tmp_path: Path) -> None:
    where = state_locations(tmp_path, None)
    assert where.deployment == f"sqlite:///{tmp_path / 'level3' / 'deployment.db'}"
    assert where.loop.endswith("level4/monitoring.db") and not where.shared
    assert not where.present("predictions")
    (tmp_path / "level3").mkdir()
    (tmp_path / "level3" / "predictions.db").touch()
    assert where.present("predictions")


def test_a_url_puts_every_store_in_one_database(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://taxi:pw@db.internal:5432/taxi"
    where = state_locations(tmp_path, url)
    assert where.deployment == where.predictions == where.loop == url
    assert where.shared and where.present("loop")


def test_the_setting_is_a_secret_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_URL", "postgresql+psycopg2://taxi:s3cret@h:5432/t")
    settings = Settings()
    assert "s3cret" not in repr(settings)
    assert settings.state_url == "postgresql+psycopg2://taxi:s3cret@h:5432/t"
    assert "s3cret" not in str(Database(settings.state_url))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u:p@h/db", "'mysql' is not supported"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_a_bad_url_names_the_variable_and_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"TAXI_MLOPS_STATE_DB_URL: .*{problem}"):
        Database(url)


def test_a_path_is_a_sqlite_file_whose_folder_is_made(tmp_path: Path) -> None:
    db = Database(tmp_path / "deep" / "state.db")
    assert db.dialect == "sqlite" and db.sqlite_path == tmp_path / "deep" / "state.db"
    assert (tmp_path / "deep").is_dir()


def test_a_user_and_password_given_apart_go_into_the_url_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_URL", "postgresql+psycopg2://db.internal/mlflow")
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_USER", "mlflow")
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_PASSWORD", "p@ss:/w%rd")
    settings = Settings()
    assert (
        settings.state_url == "postgresql+psycopg2://mlflow:p%40ss%3A%2Fw%25rd@db.internal/mlflow"
    )
    assert "p@ss" not in repr(settings)


def test_a_sqlite_url_takes_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("TAXI_MLOPS_STATE_DB_PASSWORD", "x")
    with pytest.raises(ConfigError, match="SQLite database takes no user"):
        _ = Settings().state_url


def test_an_outage_is_logged_once_in_a_while_with_a_count_of_what_was_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A service answers each request 503 while the database is down; it logs the outage, not
    each of thousands of requests."""
    import shared.log_throttle
    import shared.statedb.database as database

    now = [100.0]
    monkeypatch.setattr(shared.log_throttle, "monotonic", lambda: now[0])
    db = Database("postgresql+psycopg2://taxi:secret@127.0.0.1:1/taxi")  # nothing listens
    for _ in range(5):
        with pytest.raises(database.StateUnavailable, match="unavailable"), db.read():
            pass
        now[0] += 1.0
    now[0] += database.OUTAGE_LOG_S
    with pytest.raises(database.StateUnavailable), db.read():
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == database.__name__]
    assert len(lines) == 2, lines
    assert "\n" not in lines[0] and "secret" not in lines[0] and "more failures" not in lines[0]
    assert lines[1].endswith("(4 more failures not logged)")
