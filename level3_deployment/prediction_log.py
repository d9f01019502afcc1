"""The durable prediction log: every prediction, and the labels that arrive later.

It lives in the state database (:mod:`shared.statedb`): a SQLite file under the home by
default, PostgreSQL shared by every replica when ``TAXI_MLOPS_STATE_DB_URL`` is set. A request's
predictions are logged whole or not at all, and a request returns only once they are durable:
on SQLite, as one line of the process's journal (shared/statedb/journal.py: it survives the
writer being SIGKILLed, as a WAL commit with ``synchronous=NORMAL`` does), ingested into the
table in batches; otherwise in one transaction, which requests arriving together share
(shared/statedb/group_commit.py; PostgreSQL's commit is flushed to its WAL). Level 3's A/B
report and level 4's monitoring read from here, and every read ingests the journal first.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from level3_deployment.labels import Labelled, chunks, label_rides
from shared.data.schema import PICKUP
from shared.statedb import Database, tables
from shared.statedb.driver_insert import DriverConnection, DriverInsert, DriverScalar
from shared.statedb.group_commit import GroupCommit
from shared.statedb.journal import Ingester, Journal, Rows, ingest
from shared.statedb.tables import insert_ignoring_duplicates

P = tables.predictions
R = tables.rejections

#: what one rejection row may hold of what a client sent (the parsers already bound them:
#: this keeps any caller from storing a client's megabyte)
_MAX_KEY_CHARS = 128
_MAX_TEXT_CHARS = 300
#: the feature columns a monitoring window reads, extracted by the database (json_extract on
#: SQLite, ->> on PostgreSQL): parsing the JSON in Python costs ~10x more at a million rows.
#: All are read as numbers: a zone id may be logged as 234.0, which PostgreSQL will not cast
#: to an integer; the zone ids become integers in the frame.
_WINDOW_FEATURES = ("PULocationID", "DOLocationID", "trip_distance")
_ZONE_IDS = ("PULocationID", "DOLocationID")


@dataclass(frozen=True)
class Rejection:
    """A ride or label refused at the door, kept so monitoring can count bad input."""

    route: str
    field: str
    message: str
    request_key: str | None = None
    event_time: str | None = None
    # dataclasses.field by its full name: this class has a field called "field"
    ts: float = dataclasses.field(default_factory=time.time)


class IdempotencyConflict(Exception):  # noqa: N818 - the HTTP meaning is the name
    """A request id was reused for a different request."""


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "..."


def new_prediction_id() -> str:
    """A fresh id for a prediction logged without a request id (with one, a retry's rows get
    the same ids: level3_deployment/scoring.py): a UUID version 7 as 32 hex digits (RFC 9562:
    48 bits of Unix milliseconds, then 74 random bits), built from the integer without a UUID
    object. Ids that grow with time go in at the end of the log's unique index: random ones
    (uuid4) land all over it, and a commit then writes twice the pages (measured: 1,000 rows
    with their indexes, 15 ms with random ids, 7 ms with these)."""
    millis = time.time_ns() // 1_000_000
    bits = int.from_bytes(os.urandom(10), "big")  # 80 drawn, 74 used
    value = (
        (millis & _MILLIS_MASK) << 80
        | 0x7 << 76  # version 7
        | ((bits >> 62) & 0xFFF) << 64
        | 0b10 << 62  # RFC 9562 variant
        | (bits & _RAND_B_MASK)
    )
    return f"{value:032x}"


_MILLIS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1


@dataclass(frozen=True)
class PredictionRecord:
    request_key: str | None
    variant: str
    model_version: str
    features: dict[str, Any]
    prediction: float
    latency_ms: float
    shadow: bool = False
    ts: float = field(default_factory=time.time)
    prediction_id: str = field(default_factory=new_prediction_id)


def _logged_at(rows: list[dict[str, Any]]) -> float:
    """A journal line's place in the table: its time, so the log's ids follow time across
    workers as they did with a commit per request (the first prediction of a ride is the one
    with the lowest id; level 4 splits its training data in that order)."""
    return float(rows[0]["ts"])


def journal_directory(database: Path) -> Path:
    """Where a SQLite prediction log's journal is (shared/statedb/journal.py)."""
    return database.with_name(database.stem + "-journal")


class PredictionLog:
    def __init__(
        self, db: Database | str | Path, *, journal: bool = False, migrate: bool = True
    ) -> None:
        """``journal``: on SQLite, a request's rows (without a request id) go to this
        process's journal file and reach the table in batches, off the request path
        (shared/statedb/journal.py); otherwise each request commits its own transaction.
        Either way an answered request is logged once; every read here ingests the journal
        first. PostgreSQL is shared by machines whose journals it could not see: it always
        commits per request. ``migrate=False``: the tables are known to be current (a
        service's master migrated them), so nothing here touches the database yet."""
        # every answer commits a transaction: the WAL checkpoints run off the request path
        self.db = db if isinstance(db, Database) else Database(db, background_checkpoints=True)
        if migrate:
            self.db.migrate("predictions")
        path = self.db.sqlite_path
        self._journal_dir = None if path is None else journal_directory(path)
        self._journal: Journal | None = None
        self._ingester: Ingester | None = None
        if journal and self._journal_dir is not None:
            self._journal = Journal(self._journal_dir)
            self._ingester = Ingester(self._journal_dir, self._ingest_rows, order=_logged_at)
        # built once: the hot path only binds rows
        self._insert = insert_ignoring_duplicates(self.db.dialect, P, "prediction_id")
        self._digest = sa.select(P.c.request_digest).where(
            P.c.prediction_id == sa.bindparam("prediction_id")
        )
        # concurrent requests of this process share transactions (shared/statedb/group_commit);
        # on SQLite they run on the driver's connection, with statements compiled once
        self._group: GroupCommit[_Request, int]
        if self.db.dialect == "sqlite":
            self._driver = DriverInsert.compile(self._insert, _ROW_KEYS)
            self._driver_digest = DriverScalar.compile(self._digest)
            self._group = GroupCommit(self.db, self._write_driver, self.db.driver_write)
        else:
            self._group = GroupCommit(self.db, self._write)

    def close(self) -> None:
        """Seal this process's journal and ingest it, then close the connections."""
        if self._journal is not None and self._ingester is not None:
            self._ingester.stop()
            self._journal.close()
            self.sync()
        self.db.dispose()

    def append(self, records: Iterable[PredictionRecord], request_digest: str | None = None) -> int:
        """Log a request's predictions whole: one line of the journal, or one transaction.
        A request with an id (``request_digest``) always takes the transaction, which checks
        it: rows whose ``prediction_id`` is already logged are a retry and are kept once, but
        only when ``request_digest`` matches the logged one, otherwise
        :class:`IdempotencyConflict` and nothing is written."""
        rows = [_row(r, request_digest) for r in records]
        if not rows:
            return 0
        if self._journal is not None and request_digest is None:
            self._journal.append(rows)  # fresh ids: nothing to check against the table
            self._ingester.ensure_running()  # type: ignore[union-attr]  # set with the journal
            return len(rows)
        return self._group.submit((rows, request_digest))

    def sync(self) -> int:
        """This machine's journal into the table (every read does this first): the rows
        ingested."""
        if self._journal_dir is None:
            return 0
        return ingest(self._journal_dir, self._ingest_rows, order=_logged_at)

    def _ingest_rows(self, rows: Rows) -> None:
        self._group.submit((rows, None))

    def _write(self, conn: Connection, requests: list[_Request]) -> list[int]:
        """Requests' rows, in the transaction :class:`GroupCommit` gives them: one statement."""
        conn.execute(self._insert, [row for rows, _ in requests for row in rows])
        return _digests_checked(
            requests, lambda key: conn.execute(self._digest, {"prediction_id": key}).scalar()
        )

    def _write_driver(self, dbapi: DriverConnection, requests: list[_Request]) -> list[int]:
        """:meth:`_write` on SQLite's driver connection (``Database.driver_write``)."""
        self._driver.run(dbapi, [row for rows, _ in requests for row in rows])
        return _digests_checked(requests, lambda key: self._driver_digest.run(dbapi, (key,)))

    def record_feedback(self, request_key: str, actual: float) -> int:
        """Store the actual duration for a key; returns how many predictions it labels."""
        return self.record_feedback_batch([(request_key, actual)])[0]

    def record_feedback_batch(self, labels: list[tuple[str, float]]) -> list[int]:
        """:meth:`record_labels`, as how many predictions each label labels (0: not stored)."""
        return [
            0 if o.status in ("conflict", "unknown") else o.predictions
            for o in self.record_labels(labels)
        ]

    def record_labels(self, labels: list[tuple[str, float]]) -> list[Labelled]:
        """Store many labels in one transaction, by the first-label-wins rule (:class:`Labelled`).
        The label is copied onto the ride's predictions, which both the A/B report and
        monitoring read."""
        self.sync()
        with self.db.write() as conn:
            return label_rides(conn, self.db.dialect, labels, time.time())

    def event_times_of(self, request_keys: Iterable[str]) -> dict[str, str]:
        """Each ride's event time (its first, if a ride id was reused), for the rides that
        have a logged prediction with one."""
        self.sync()
        times: dict[str, str] = {}
        with self.db.read() as conn:
            for batch in chunks(dict.fromkeys(request_keys)):
                query = (
                    sa.select(P.c.request_key, sa.func.min(P.c.event_time))
                    .where(P.c.request_key.in_(batch), P.c.event_time.is_not(None))
                    .group_by(P.c.request_key)
                )
                times.update((key, str(when)) for key, when in conn.execute(query))
        return times

    def record_rejections(self, rejections: Iterable[Rejection]) -> None:
        rows = [
            {
                "ts": r.ts,
                "event_time": _cut(r.event_time, 32),
                "route": r.route,
                "request_key": _cut(r.request_key, _MAX_KEY_CHARS),
                "field": _cut(r.field, _MAX_TEXT_CHARS),
                "message": _cut(r.message, _MAX_TEXT_CHARS),
            }
            for r in rejections
        ]
        if rows:
            with self.db.write() as conn:
                conn.execute(sa.insert(R), rows)

    def window(self, start: str, end: str) -> pd.DataFrame:
        """Predictions whose ride started in [start, end) (ISO 8601), with labels if any."""
        self.sync()
        with self.db.read() as conn:
            event_time = self._window_column(conn, start, end)
            features = [P.c.features[name].as_float().label(name) for name in _WINDOW_FEATURES]
            query = sa.select(
                P.c.prediction_id,
                P.c.event_time,
                P.c.request_key,
                P.c.variant,
                P.c.shadow,
                P.c.model_version,
                *features,
                P.c.prediction,
                P.c.actual,
            ).where(event_time >= start, event_time < end)
            frame = pd.read_sql_query(query, conn)
        for column in (*_WINDOW_FEATURES, "actual"):
            frame[column] = frame[column].astype("float64")
        for column in _ZONE_IDS:
            if not frame[column].isna().any():  # as SQLite's CAST did: truncated to integers
                frame[column] = frame[column].astype("int64")
        return frame

    def _window_column(self, conn: Connection, start: str, end: str) -> sa.ColumnElement[Any]:
        """SQLite reads a window that is a large part of the log faster by one scan in
        insertion order than by an index lookup per row; a unary "+" keeps it off the index.
        PostgreSQL's planner makes that choice itself."""
        if self.db.dialect != "sqlite":
            return P.c.event_time
        inside = conn.execute(
            sa.select(sa.func.count()).where(P.c.event_time >= start, P.c.event_time < end)
        ).scalar()
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.max(P.c.id), 0))).scalar()
        if int(inside or 0) > 0.1 * int(total or 0):
            return sa.literal_column("+predictions.event_time", sa.Text)
        return P.c.event_time

    def rejected(self, start: str, end: str) -> dict[str, int]:
        """Distinct rides refused per route in [start, end) of event time (a ride refused in a
        batch and again on its own counts once)."""
        ride = sa.func.coalesce(R.c.request_key, sa.literal("row:") + sa.cast(R.c.id, sa.Text))
        query = (
            sa.select(R.c.route, sa.func.count(sa.distinct(ride)))
            .where(R.c.event_time >= start, R.c.event_time < end)
            .group_by(R.c.route)
        )
        with self.db.read() as conn:
            return {route: int(n) for route, n in conn.execute(query)}

    def count(self) -> int:
        self.sync()
        with self.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(P)).scalar() or 0)

    def labelled_errors(
        self,
        since: float | None = None,
        until: float | None = None,
        versions: dict[str, str] | None = None,
        actual_range: tuple[float, float] | None = None,
        *,
        paired: bool = False,
    ) -> dict[str, np.ndarray]:
        """Prediction minus actual, per variant, for labelled predictions in a time window.

        Shadow predictions count for their variant: in shadow mode they are green's evidence.
        ``versions`` (variant -> model version) keeps only those pairs: the evidence about the
        models deployed now, not about earlier occupants of the slots. ``actual_range`` keeps
        labels inside the modelled range (what the models were trained and validated on).
        ``paired`` keeps only rides both variants scored (shadow mode: blue answered, green
        scored in the shadow), aligned: ``blue[i]`` and ``green[i]`` are the errors on one ride.
        """
        self.sync()
        query = _labelled(since, until, versions, actual_range).order_by(P.c.id)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        if paired:
            return _pairs(rows)
        out: dict[str, list[float]] = {"blue": [], "green": []}
        for variant, error, _ in rows:
            out.setdefault(variant, []).append(error)
        return {variant: np.asarray(errors) for variant, errors in out.items()}

    def frame(self, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Predictions in a window with their features and label (NaN until one arrives)."""
        self.sync()
        query = sa.select(P).where(*_ts_between(since, until)).order_by(P.c.id)
        with self.db.read() as conn:
            frame = pd.read_sql_query(query, conn)
        # the JSON column comes back as dicts (SQLAlchemy's JSON type parses SQLite's text)
        features = pd.json_normalize(frame.pop("features").tolist())
        return pd.concat([frame, features], axis=1)


#: one request's rows for the log, and the digest of the request (None without a request id)
_Request = tuple[list[dict[str, Any]], str | None]


def _digests_checked(requests: list[_Request], logged_digest: Callable[[str], Any]) -> list[int]:
    """Each request's row count, once every request that has a request id is found logged
    under its own digest (else :class:`IdempotencyConflict`: the id was used for another
    request). Checked after the insert: on PostgreSQL a concurrent insert of the same id waits
    for the other transaction, so the row read here is the one that won."""
    for rows, request_digest in requests:
        if request_digest is None:  # without a key, ids are fresh
            continue
        if logged_digest(rows[0]["prediction_id"]) != request_digest:
            raise IdempotencyConflict(rows[0]["prediction_id"])
    return [len(rows) for rows, _ in requests]


def _pairs(rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """(variant, error, ride key) rows as aligned blue and green errors on the rides both
    scored. A ride key's first prediction per variant counts (a reused ride id is not a second
    pair)."""
    first: dict[str, dict[str, float]] = {"blue": {}, "green": {}}
    for variant, error, key in rows:
        if key is not None and variant in first:
            first[variant].setdefault(key, error)
    both = [k for k in first["blue"] if k in first["green"]]
    return {v: np.asarray([first[v][k] for k in both], dtype=float) for v in first}


def _labelled(
    since: float | None,
    until: float | None,
    versions: dict[str, str] | None,
    actual_range: tuple[float, float] | None,
) -> sa.Select:
    """(variant, prediction minus actual, ride key) of labelled predictions. The label is the
    one copied onto the prediction when it arrived, as monitoring reads it: a prediction
    logged after its ride's label (a reused ride id) is not labelled."""
    query = sa.select(P.c.variant, P.c.prediction - P.c.actual, P.c.request_key).where(
        P.c.actual.is_not(None), *_ts_between(since, until)
    )
    if actual_range is not None:
        query = query.where(P.c.actual.between(*actual_range))
    if versions:
        query = query.where(
            sa.or_(
                *(
                    sa.and_(P.c.variant == variant, P.c.model_version == version)
                    for variant, version in versions.items()
                )
            )
        )
    return query


_ROW_KEYS = (
    "prediction_id",
    "request_digest",
    "event_time",
    "ts",
    "request_key",
    "variant",
    "shadow",
    "model_version",
    "features",
    "prediction",
    "latency_ms",
)


def _row(record: PredictionRecord, request_digest: str | None) -> dict[str, Any]:
    return {
        "prediction_id": record.prediction_id,
        "request_digest": request_digest,
        "event_time": record.features.get(PICKUP),
        "ts": record.ts,
        "request_key": record.request_key,
        "variant": record.variant,
        "shadow": int(record.shadow),
        "model_version": record.model_version,
        "features": record.features,
        "prediction": float(record.prediction),
        "latency_ms": record.latency_ms,
    }


def _ts_between(since: float | None, until: float | None) -> list[sa.ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(P.c.ts >= since)
    if until is not None:
        conditions.append(P.c.ts < until)
    return conditions
