"""The state layer's guarantees, each on both backends: a SQLite file (the embedded default)
and a real PostgreSQL server (the private cluster of tests/postgres.py, a new database per
test). Races are real: threads and forked processes against one database."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from level3_deployment import state as st
from level3_deployment.prediction_log import IdempotencyConflict, PredictionLog, PredictionRecord
from level3_deployment.routing import Mode
from level4_automation.monitor import WindowMetrics
from level4_automation.store import BusyError, Decision, LoopState, MonitoringStore
from shared.statedb import Database, tables
from shared.statedb.database import StateUnavailable
from tests.concurrency import race

pytestmark = pytest.mark.integration


def record(key: str | None, prediction_id: str | None = None, **extra: object) -> PredictionRecord:
    fields: dict = {
        "request_key": key,
        "variant": "blue",
        "model_version": "3",
        "features": {
            "PULocationID": 161,
            "DOLocationID": 236,
            "trip_distance": 2.5,
            "pickup_datetime": "2024-03-01T08:30:00",
        },
        "prediction": 10.0,
        "latency_ms": 1.0,
        **extra,
    }
    if prediction_id is not None:
        fields["prediction_id"] = prediction_id
    return PredictionRecord(**fields)


@pytest.fixture
def open_log(state_url: str) -> Iterator[Callable[[], PredictionLog]]:
    """Prediction logs on the test's database, each closed after the test: a log that wrote
    keeps a checkpoint thread (on SQLite), and a later test forks."""
    opened: list[PredictionLog] = []

    def open_() -> PredictionLog:
        opened.append(PredictionLog(state_url))
        return opened[-1]

    yield open_
    for log in opened:
        log.close()


# --------------------------------------------------------------------- deployment state


def test_two_operators_cannot_both_win_the_generation(state_url: str) -> None:
    store = st.StateStore(state_url)
    base = store.write(st.start(store.current(), 1, "boot", "t"), 0)
    outcomes = race(
        8,
        lambda i: st.StateStore(state_url).write(
            st.deploy(base, 10 + i, 10, Mode.AB, f"op{i}", "t"), base.generation
        ),
    )
    winners = [o for o in outcomes if isinstance(o, st.DeploymentState)]
    losers = [o for o in outcomes if isinstance(o, st.ConflictError)]
    assert len(winners) == 1 and len(losers) == 7, outcomes
    assert store.current() == winners[0] and store.generation() == 2
    assert [s.reason for s in store.history()] == ["boot", winners[0].reason]


# ---------------------------------------------------------------------- prediction log


def test_a_retry_is_logged_once_and_a_reused_key_with_another_body_refused(
    open_log: Callable[[], PredictionLog],
) -> None:
    log = open_log()
    row = record("ride-1", "req-1:0")
    assert log.append([row], request_digest="body-a") == 1
    log.append([row], request_digest="body-a")
    with pytest.raises(IdempotencyConflict):
        log.append([row], request_digest="body-b")
    assert log.count() == 1


def test_concurrent_reuse_of_a_key_lets_exactly_one_body_in(
    open_log: Callable[[], PredictionLog],
) -> None:
    logs = [open_log() for _ in range(6)]
    outcomes = race(
        6, lambda i: logs[i].append([record(f"r{i}", "shared-id:0")], request_digest=f"body-{i}")
    )
    assert sum(1 for o in outcomes if o == 1) == 1, outcomes
    assert sum(1 for o in outcomes if isinstance(o, IdempotencyConflict)) == 5
    assert logs[0].count() == 1


def test_a_request_is_logged_whole_or_not_at_all(open_log: Callable[[], PredictionLog]) -> None:
    log = open_log()
    broken = record("ride-2", variant=None)  # NOT NULL: the database refuses this row
    with pytest.raises(sa.exc.IntegrityError):
        log.append([record("ride-1"), broken, record("ride-3")])
    assert log.count() == 0
    log.append([record("ride-1"), record("ride-3")])
    assert log.count() == 2


def test_first_label_wins_even_when_two_arrive_at_once(
    open_log: Callable[[], PredictionLog],
) -> None:
    log = open_log()
    log.append([record("ride-1"), record("ride-1", variant="green")])
    logs = [open_log() for _ in range(6)]
    outcomes = race(6, lambda i: logs[i].record_labels([("ride-1", 10.0 + i)])[0])
    stored = [o for o in outcomes if getattr(o, "status", None) == "stored"]
    assert len(stored) == 1 and stored[0].predictions == 2, outcomes
    assert all(getattr(o, "status", None) in ("stored", "conflict") for o in outcomes)
    kept = log.frame()["actual"].tolist()
    assert len(set(kept)) == 1 and kept[0] in [10.0 + i for i in range(6)]
    assert log.record_labels([("ghost", 3.0)])[0].status == "unknown"


def test_the_monitoring_window_is_selected_and_unpacked_in_the_database(
    open_log: Callable[[], PredictionLog],
) -> None:
    log = open_log()
    early = record("a", **{"ts": 1.0})
    later = PredictionRecord(
        **{
            **early.__dict__,
            "request_key": "b",
            "prediction_id": "p-b",
            "features": {
                **early.features,
                "pickup_datetime": "2024-03-01T10:30:00",
                "PULocationID": 7,
            },
        }
    )
    log.append([early, later])
    log.record_feedback("b", 12.5)
    statements: list[str] = []
    sa.event.listen(log.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    frame = log.window("2024-03-01T10:00:00", "2024-03-01T11:00:00")
    assert frame["request_key"].tolist() == ["b"]
    assert frame.loc[0, "PULocationID"] == 7 and frame.loc[0, "trip_distance"] == 2.5
    assert str(frame["PULocationID"].dtype) == "int64"
    assert frame.loc[0, "actual"] == 12.5
    window_sql = [s for s in statements if "event_time" in s and "prediction_id" in s]
    assert window_sql, statements
    extracted = "JSON_EXTRACT" if log.db.dialect == "sqlite" else "->>"
    assert extracted in window_sql[-1] and "WHERE" in window_sql[-1]


# --------------------------------------------------------------------- level-4 records


def test_the_loop_records_round_trip_and_upsert(state_url: str) -> None:
    store = MonitoringStore(state_url)
    window = WindowMetrics(start="2024-03-01T10:00:00", end="2024-03-01T11:00:00", rows=5)
    store.save_window(window)
    store.save_window(WindowMetrics(start=window.start, end=window.end, rows=9))
    assert [w.rows for w in store.windows()] == [9]
    store.save_state(LoopState(phase="canary", canary_version=4))
    store.save_state(LoopState(phase="canary", canary_version=5))
    assert MonitoringStore(state_url).state().canary_version == 5
    store.record(Decision(window.start, "none", "healthy", "ok", {"alert": "logged"}))
    (decision,) = MonitoringStore(state_url).decisions()
    assert decision["details"] == {"alert": "logged"} and decision["action"] == "none"


def _hold_the_lock(url: str, held: mp.Event, release: mp.Event) -> None:
    with MonitoringStore(url).locked():
        held.set()
        release.wait(30)


def test_a_second_cycle_in_another_process_sees_the_lock(state_url: str) -> None:
    MonitoringStore(state_url)
    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_the_lock, args=(state_url, held, release))
    holder.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(BusyError, match="another monitoring cycle"),
            MonitoringStore(state_url).locked(),
        ):
            pass
    finally:
        release.set()
        holder.join(30)
    with MonitoringStore(state_url).locked():  # released with its holder
        pass


def test_a_killed_lock_holder_does_not_hold_it_forever(state_url: str) -> None:
    MonitoringStore(state_url)
    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_the_lock, args=(state_url, held, release))
    holder.start()
    assert held.wait(30)
    holder.kill()
    holder.join(30)
    deadline = time.monotonic() + 10  # PostgreSQL ends the dead session's backend
    while True:
        try:
            with MonitoringStore(state_url).locked():
                break
        except BusyError:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.2)


# -------------------------------------------------------------------------- migrations


def _migrate_all(url: str) -> None:
    st.StateStore(url)
    PredictionLog(url)
    MonitoringStore(url)


def test_processes_migrating_at_once_leave_one_schema_at_head(state_url: str) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_migrate_all, args=(state_url,)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    db = Database(state_url)
    with db.read() as conn:
        heads = sorted(
            r[0] for r in conn.execute(sa.text("SELECT version_num FROM taxi_mlops_state_version"))
        )
    assert heads == ["deployment_0001", "loop_0001", "predictions_0001"]
    db.dispose()


def test_an_unreachable_database_is_a_fast_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StateUnavailable, match=r"127\.0\.0\.1.*unavailable"):
        PredictionLog(f"postgresql+psycopg2://taxi:secret@127.0.0.1:{port}/taxi")
    assert time.monotonic() - started < 10
    with pytest.raises(StateUnavailable) as caught:
        PredictionLog(f"postgresql+psycopg2://taxi:secret@127.0.0.1:{port}/taxi")
    assert "secret" not in str(caught.value)


def test_a_home_from_before_the_state_layer_upgrades_in_place(tmp_path: Path) -> None:
    """The three SQLite files as the hand-written DDL left them keep their rows."""
    (tmp_path / "level3").mkdir()
    (tmp_path / "level4").mkdir()
    with sqlite3.connect(tmp_path / "level3" / "deployment.db") as conn:
        conn.executescript(
            "CREATE TABLE deployment (generation INTEGER PRIMARY KEY, state TEXT NOT NULL,"
            " ts REAL NOT NULL);"
        )
    store = st.StateStore(tmp_path / "level3" / "deployment.db")
    store.write(st.start(store.current(), 3, "boot", "t"), 0)
    with sqlite3.connect(tmp_path / "level4" / "monitoring.db") as conn:
        conn.executescript(
            "CREATE TABLE decisions (id INTEGER PRIMARY KEY, window_start TEXT NOT NULL,"
            " action TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT"
            " NULL, recorded_at REAL NOT NULL);"
            "INSERT INTO decisions VALUES (1, 'w', 'none', 'healthy', 'ok', '{}', 1.0);"
        )
    assert MonitoringStore(tmp_path / "level4" / "monitoring.db").decisions()[0]["rule"] == (
        "healthy"
    )
    assert st.StateStore(tmp_path / "level3" / "deployment.db").current().blue == 3


# ------------------------------------------------------------------ the cloud's wiring


def test_credentials_given_apart_from_the_url_reach_postgresql(
    postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ECS injects an RDS-managed secret's username and password as variables of their own;
    the URL names only the host and database."""
    from sqlalchemy.engine import make_url

    from shared.errors import ConfigError
    from shared.settings import Settings

    with postgres.database() as url:
        full = make_url(url)
        bare = full.set(username=None, password=None).render_as_string(hide_password=False)
        monkeypatch.setenv("TAXI_MLOPS_STATE_DB_URL", bare)
        monkeypatch.setenv("TAXI_MLOPS_STATE_DB_USER", str(full.username))
        monkeypatch.setenv("TAXI_MLOPS_STATE_DB_PASSWORD", str(full.password))
        log = PredictionLog(Settings().state_url)
        log.append([record("cred-1")])
        assert log.count() == 1
        log.db.dispose()
        monkeypatch.setenv("TAXI_MLOPS_STATE_DB_PASSWORD", "not-the-password")
        with pytest.raises(StateUnavailable, match="password authentication failed"):
            PredictionLog(Settings().state_url)
    monkeypatch.delenv("TAXI_MLOPS_STATE_DB_URL")
    with pytest.raises(ConfigError, match="TAXI_MLOPS_STATE_DB_URL is not"):
        _ = Settings().state_url


def test_the_state_tables_share_mlflows_database_without_touching_it(
    postgres, tmp_path: Path
) -> None:
    """In AWS the state lives in the RDS database MLflow uses: its own tables and its own
    Alembic version table, so neither history sees the other's."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with postgres.database() as url:
        mlflow_store = SqlAlchemyStore(url, str(tmp_path / "artifacts"))
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            mlflow_tables = set(sa.inspect(conn).get_table_names())
            mlflow_head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        ours = set(tables.metadata.tables)
        assert ours.isdisjoint(mlflow_tables), ours & mlflow_tables
        for branch in ("deployment", "predictions", "loop"):
            Database(url).migrate(branch)
        log = PredictionLog(url)
        log.append([record("shared-db-1")])
        assert log.count() == 1
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
                mlflow_head
            )
            assert set(sa.inspect(conn).get_table_names()) == mlflow_tables | ours | {
                "taxi_mlops_state_version"
            }
        experiment = mlflow_store.create_experiment("still-works")
        assert mlflow_store.get_experiment(experiment).name == "still-works"
        mlflow_store.engine.dispose()
        log.db.dispose()
        engine.dispose()
