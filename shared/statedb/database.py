"""A database of operational state: a SQLAlchemy engine that is safe across fork() and threads,
transactions that behave alike on SQLite and PostgreSQL, a named exclusive lock, and the
Alembic migrations of one store.

On SQLite every write transaction is ``BEGIN IMMEDIATE``: the writer lock is taken up front,
so two writers queue on the busy timeout instead of one failing when it upgrades a read lock.
Reads run in a deferred transaction and never block writers (WAL). On PostgreSQL the default
READ COMMITTED isolation applies; the stores' statements are written to be correct under it
(unique keys and ``ON CONFLICT`` decide races, not a prior SELECT).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from shared.errors import ConfigError, TaxiMlopsError
from shared.log_throttle import LogThrottle
from shared.statedb.checkpointer import Checkpointer

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
#: the stores, each an Alembic branch of its own (so each SQLite file holds only its tables,
#: and one shared database holds them all)
BRANCHES = ("deployment", "predictions", "loop")
SUPPORTED = ("sqlite", "postgresql")
_READ_OPTION = "taxi_mlops_read"


class StateUnavailable(TaxiMlopsError):  # noqa: N818 - named for what the caller sees
    """The state database cannot be reached or refused the statement (HTTP 503)."""


class LockHeld(TaxiMlopsError):  # noqa: N818
    """Someone else holds the named lock."""


@dataclass(frozen=True)
class StateLocations:
    """Where each store lives: one SQLite file each under a home, or one shared database."""

    deployment: str
    predictions: str
    loop: str

    @property
    def shared(self) -> bool:
        return not self.deployment.startswith("sqlite")

    def present(self, store: str) -> bool:
        """Whether the store exists yet: a shared database always does (its tables are made on
        first use); a SQLite file only once something wrote it."""
        url = getattr(self, store)
        return self.shared or Path(url.removeprefix("sqlite:///")).exists()


def state_locations(home: Path, url: str | None) -> StateLocations:
    """The embedded default (SQLite files under ``home``), or ``url`` for all of it."""
    if url:
        return StateLocations(url, url, url)
    return StateLocations(
        deployment=f"sqlite:///{home / 'level3' / 'deployment.db'}",
        predictions=f"sqlite:///{home / 'level3' / 'predictions.db'}",
        loop=f"sqlite:///{home / 'level4' / 'monitoring.db'}",
    )


def parse_url(url: str | Path) -> URL:
    """A SQLAlchemy URL for SQLite or PostgreSQL; a bare path is a SQLite file."""
    if isinstance(url, Path):
        return make_url(f"sqlite:///{url}")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            "TAXI_MLOPS_STATE_DB_URL: not a database URL (expected e.g. "
            "postgresql+psycopg2://user:password@host:5432/taxi or sqlite:////path/state.db)"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise ConfigError(
            f"TAXI_MLOPS_STATE_DB_URL: {parsed.get_backend_name()!r} is not supported "
            f"(one of: {', '.join(SUPPORTED)})"
        )
    if parsed.get_backend_name() == "sqlite" and not parsed.database:
        raise ConfigError("TAXI_MLOPS_STATE_DB_URL: a SQLite URL needs a file path")
    return parsed


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    """``url`` with its user and password replaced (quoted as a URL needs them)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        raise ConfigError("TAXI_MLOPS_STATE_DB_USER/PASSWORD: a SQLite database takes no user")
    if user is not None:
        parsed = parsed.set(username=user)
    if password is not None:
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


#: built once: json.dumps with any argument builds a new encoder on every call, which costs
#: more than encoding a ride's few features
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """How a JSON column's value is stored (SQLAlchemy's serialiser and the driver INSERT's):
    by orjson (a logged ride's features in a sixth of the time), and by the standard library
    for what orjson does not encode (a float subclass, say). NaN is stored as null: JSON has
    no NaN, and SQLite's JSON functions refuse the text the standard library writes for it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return _COMPACT.encode(value)


#: an outage is logged at most once in this many seconds per database: a service answers
#: every request 503 while it lasts, and would otherwise log each one
OUTAGE_LOG_S = 10.0


class Database:
    """One state database. Cheap to build; the engine is made on first use in each process."""

    def __init__(
        self, url: str | Path, *, busy_timeout_s: float = 10.0, background_checkpoints: bool = False
    ) -> None:
        """``background_checkpoints``: on SQLite, a :meth:`writer_connection` leaves the WAL
        checkpoint to a thread of its own (shared/statedb/checkpointer.py): for a service
        whose requests each commit."""
        self.url = parse_url(url)
        self._busy_timeout_s = busy_timeout_s
        self._engine: Engine | None = None
        self._pid = 0
        self._guard = threading.Lock()
        self._migrated: set[str] = set()
        self._writer_pid = 0
        self._writer_mutex = threading.Lock()
        self._writer_fd: int | None = None
        self._checkpointer: Checkpointer | None = None
        self._outages = LogThrottle(OUTAGE_LOG_S)
        if self.dialect == "sqlite":
            Path(str(self.url.database)).parent.mkdir(parents=True, exist_ok=True)
            if background_checkpoints:
                self._checkpointer = Checkpointer(Path(str(self.url.database)), busy_timeout_s)

    @property
    def dialect(self) -> str:
        return str(self.url.get_backend_name())

    @property
    def checkpointer(self) -> Checkpointer | None:
        """The thread that checkpoints this SQLite database's log, when it has one."""
        return self._checkpointer

    @property
    def sqlite_path(self) -> Path | None:
        return Path(str(self.url.database)) if self.dialect == "sqlite" else None

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------------- engine
    @property
    def engine(self) -> Engine:
        # Connections must not cross fork() (gunicorn forks workers from its master): a child
        # drops the inherited pool without closing the parent's sockets, and opens its own.
        with self._guard:
            if self._engine is None or self._pid != os.getpid():
                if self._engine is not None:
                    self._engine.dispose(close=False)
                self._engine, self._pid = self._create_engine(), os.getpid()
            return self._engine

    def _create_engine(self) -> Engine:
        if self.dialect == "postgresql":
            try:
                return sa.create_engine(
                    self.url,
                    # No ping before each use (a round trip per transaction, ~20 % of a logged
                    # request): a connection a restarted server left dead fails its one
                    # statement (503, retried by the client) and SQLAlchemy then invalidates
                    # the whole pool (tests/integration/test_state_faults.py).
                    pool_pre_ping=False,
                    pool_size=8,
                    max_overflow=8,
                    pool_timeout=5,
                    json_serializer=compact_json,
                    connect_args={"connect_timeout": 3, "application_name": "taxi-mlops"},
                )
            except (NoSuchModuleError, ModuleNotFoundError) as exc:
                raise ConfigError(
                    f"{self}: the PostgreSQL driver is missing ({exc}); "
                    "install taxi-mlops[cloud] (psycopg2-binary)"
                ) from None
        engine = sa.create_engine(
            self.url,
            json_serializer=compact_json,
            connect_args={"timeout": self._busy_timeout_s, "check_same_thread": False},
        )
        _sqlite_transactions(engine, int(self._busy_timeout_s * 1000))
        return engine

    def writer_connection(self) -> Connection:
        """A connection for one writer to keep between its transactions (the group commit's).
        With background checkpoints its commits leave the WAL checkpoint to this process's
        checkpoint thread, started here: not when the engine is made, because a process that
        forks (gunicorn's master) must not be running a thread inside SQLite when it does.
        Other connections keep SQLite's own checkpoints, so the log stays bounded whoever
        writes."""
        with self.unavailable_as_error():
            conn = self.engine.connect()
        if self._checkpointer is not None:
            # on the driver: through SQLAlchemy it would begin a transaction (and a write lock)
            conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_autocheckpoint=0"
            )
            self._checkpointer.ensure_running()
        return conn

    def dispose(self) -> None:
        with self._guard:
            if self._engine is not None and self._pid == os.getpid():
                self._engine.dispose()
            self._engine = None
        if self._checkpointer is not None:
            self._checkpointer.stop()

    # ------------------------------------------------------------------- transactions
    @contextmanager
    def write(self, held: Connection | None = None) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on an error.
        ``held``: a connection the caller keeps open between transactions (one writer's, such
        as the group commit's), which saves the pool's checkout and reset: a third of an empty
        transaction's cost on SQLite."""
        with self._writer_turn(), self.unavailable_as_error():
            if held is None:
                with self.engine.begin() as conn:
                    yield conn
            else:
                with held.begin():
                    yield held

    @contextmanager
    def driver_write(self, held: Connection) -> Iterator[sqlite3.Connection]:
        """:meth:`write` on ``held`` (SQLite), with ``BEGIN IMMEDIATE`` and ``COMMIT`` sent to
        the driver's own connection, which the block gets: SQLAlchemy's transaction (its
        objects and events) around a logged prediction cost ~25 us of a ~220 us level-3
        request, measured in one process. The same writer's turn as :meth:`write`; the
        driver's errors come out as SQLAlchemy's, so an outage is still
        :class:`StateUnavailable`; a failure rolls the transaction back."""
        if self.dialect != "sqlite":
            raise ValueError(f"{self}: a driver transaction is SQLite's")
        with self._writer_turn(), self.unavailable_as_error(), sqlite_errors():
            dbapi: sqlite3.Connection = held.connection.dbapi_connection  # type: ignore[assignment]
            dbapi.execute("BEGIN IMMEDIATE")
            try:
                yield dbapi
                dbapi.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    with suppress(sqlite3.Error):  # the error that got here is the one to raise
                        dbapi.execute("ROLLBACK")
                raise

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        its busy handler (1, 2, 5, 10 ms and longer) and tries again: under a service's
        concurrent requests, those sleeps, not the work, set the latency. Writers of this
        database therefore queue on a lock file first (flock: the kernel wakes the next one
        the moment the lock is free), threads of one process on a mutex before it. The busy
        handler is left for writers that do not take the file lock (another program)."""
        if self.dialect != "sqlite":
            yield
            return
        with self._write_mutex():
            fd = self._write_lock_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write_mutex(self) -> threading.Lock:
        if self._writer_pid != os.getpid():  # a lock copied by fork() may be held
            self._writer_mutex, self._writer_fd = threading.Lock(), None
            self._writer_pid = os.getpid()
        return self._writer_mutex

    def _write_lock_fd(self) -> int:
        if self._writer_fd is None:
            path = self._lock_file("write")
            self._writer_fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        return self._writer_fd

    def _lock_file(self, name: str) -> Path:
        """The file a SQLite database's lock ``name`` is taken on (flock), beside it."""
        return Path(str(self.sqlite_path)).with_suffix(f".{name}.lock")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read that takes no write lock."""
        with (
            self.unavailable_as_error(),
            self.engine.connect().execution_options(**{_READ_OPTION: True}) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def unavailable_as_error(self) -> Iterator[None]:
        """A lost or refused connection, in the block, as :class:`StateUnavailable`."""
        try:
            yield
        except DBAPIError as exc:
            if not _is_outage(exc):
                raise
            self._log_outage(exc.orig)
            raise StateUnavailable(
                f"the state database {self} is unavailable: {str(exc.orig).strip()[:300]}"
            ) from None

    def _log_outage(self, error: object) -> None:
        left_out = self._outages.due()
        if left_out is None:
            return
        more = f" ({left_out} more failures not logged)" if left_out else ""
        # one line: libpq's messages carry their own line breaks and tabs
        logger.error(
            "state database %s unavailable: %s%s", self, " ".join(str(error).split()), more
        )

    # ------------------------------------------------------------------------- a lock
    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` for the block, or raise :class:`LockHeld` at once. On
        PostgreSQL an advisory lock on a connection held for the block (released if the holder
        dies: the server ends its session); on SQLite a lock file beside the database."""
        if self.dialect == "postgresql":
            with self._advisory_lock(name):
                yield
            return
        path = self._lock_file(name)
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(f"lock {name!r} is held (lock file {path})") from None
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _advisory_lock(self, name: str) -> Iterator[None]:
        key = _lock_key(name)
        with (
            self.unavailable_as_error(),
            self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        ):
            taken = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if not taken:
                raise LockHeld(f"lock {name!r} is held (PostgreSQL advisory lock {key} on {self})")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    # --------------------------------------------------------------------- migrations
    def migrate(self, branch: str) -> None:
        """Bring ``branch``'s tables to the newest revision (once per process). Concurrent
        callers queue: on the writer lock (SQLite) or an advisory lock (PostgreSQL)."""
        if branch not in BRANCHES:
            raise ValueError(f"unknown state branch {branch!r}")
        if branch in self._migrated:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.write() as conn:
            if self.dialect == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("migrate")}
                )
            config.attributes["connection"] = conn
            command.upgrade(config, f"{branch}@head")
        self._migrated.add(branch)


#: what SQLite says when the file is busy beyond the timeout or cannot be reached (its other
#: OperationalErrors, such as a missing table, are bugs to surface)
_SQLITE_OUTAGES = ("database is locked", "unable to open", "disk i/o", "readonly database")


def _is_outage(exc: DBAPIError) -> bool:
    """A lost, refused or overloaded connection: not a bad statement."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return False
    if exc.orig is not None and type(exc.orig).__module__.startswith("sqlite3"):
        return any(text in str(exc.orig).lower() for text in _SQLITE_OUTAGES)
    return True


@contextmanager
def sqlite_errors(statement: str = "", params: Any = None) -> Iterator[None]:
    """The SQLite driver's errors in the block as SQLAlchemy's own (``DBAPIError.instance``:
    an IntegrityError is ``sa.exc.IntegrityError``), so that callers of the driver's hot
    paths see one kind of error either way."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(
            statement, params, exc, sqlite3.Error, hide_parameters=True
        ) from None


def _sqlite_transactions(engine: Engine, busy_timeout_ms: int) -> None:
    """pysqlite's own transaction handling defers BEGIN; take it over (SQLAlchemy's documented
    recipe) so a write begins IMMEDIATE and a read begins DEFERRED."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # a committed row survives the writer being SIGKILLed; only power loss can take it
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        reading = conn.get_execution_options().get(_READ_OPTION, False)
        # straight to the driver: SQLAlchemy's execution path would double a log write's cost
        conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN" if reading else "BEGIN IMMEDIATE"
        )
