"""The durable prediction log: every prediction, and the labels that arrive later.

SQLite in WAL mode: each gunicorn worker (and each of its threads) writes through its own
connection; a batch is one transaction, so a request's predictions are logged whole or not at
all. With ``synchronous=NORMAL`` a committed row survives the writer being killed (SIGKILL);
only a power loss can take the last commits. Level 3's A/B report and level 4's monitoring read
from here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared.data.schema import PICKUP

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    prediction_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    request_key TEXT,
    variant TEXT NOT NULL,
    shadow INTEGER NOT NULL DEFAULT 0,
    model_version TEXT NOT NULL,
    features TEXT NOT NULL,
    prediction REAL NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_key ON predictions (request_key);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS feedback (
    request_key TEXT PRIMARY KEY,
    actual REAL NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event_time TEXT,
    route TEXT NOT NULL,
    request_key TEXT,
    field TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_event ON rejections (event_time);
"""
#: Added after the first release: the ride's pickup time (ISO 8601), so monitoring windows
#: follow event time (a replay's simulated clock, or a late batch) rather than arrival time.
_MIGRATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("predictions", "event_time", ("ALTER TABLE predictions ADD COLUMN event_time TEXT",)),
    # The label, copied onto its predictions when it arrives: a monitoring window then reads
    # one table in order instead of a million index lookups into ``feedback``.
    (
        "predictions",
        "actual",
        (
            "ALTER TABLE predictions ADD COLUMN actual REAL",
            "UPDATE predictions SET actual = (SELECT f.actual FROM feedback f"
            " WHERE f.request_key = predictions.request_key)"
            " WHERE request_key IN (SELECT request_key FROM feedback)",
        ),
    ),
    # A digest of the request that logged the row: a retried request (same X-Request-Id) must
    # be the same request, or it is refused instead of answered and silently not logged.
    ("predictions", "request_digest", ("ALTER TABLE predictions ADD COLUMN request_digest TEXT",)),
)
_POST_MIGRATION = "CREATE INDEX IF NOT EXISTS predictions_event ON predictions (event_time);"
#: what one rejection row may hold of what a client sent (the parsers already bound them:
#: this keeps any caller from storing a client's megabyte)
_MAX_KEY_CHARS = 128
_MAX_TEXT_CHARS = 300
#: two labels for a ride agree when they differ by less than this (minutes)
_SAME_LABEL_MIN = 1e-6

#: The columns a monitoring window reads, straight out of SQLite (json_extract runs in C:
#: parsing the JSON in Python costs ~10x more at a million rows).
_WINDOW_QUERY = """
SELECT prediction_id, event_time, request_key, variant, shadow, model_version,
       CAST(json_extract(features, '$.PULocationID') AS INTEGER) AS PULocationID,
       CAST(json_extract(features, '$.DOLocationID') AS INTEGER) AS DOLocationID,
       json_extract(features, '$.trip_distance') AS trip_distance,
       prediction, actual
FROM predictions WHERE {column} >= ? AND {column} < ?
"""


@dataclass(frozen=True)
class Rejection:
    """A ride or label refused at the door, kept so monitoring can count bad input."""

    route: str
    field: str
    message: str
    request_key: str | None = None
    event_time: str | None = None
    ts: float = field(default_factory=time.time)


class IdempotencyConflict(Exception):  # noqa: N818 - the HTTP meaning is the name
    """A request id was reused for a different request."""


@dataclass(frozen=True)
class Labelled:
    """What became of one label. The rule is *first label wins*: a ride's first label is
    stored; the same value again is a harmless retry; a different value is refused and the
    stored one kept; a label for a ride that has no logged prediction is not stored at all."""

    status: str  # "stored", "duplicate", "conflict" or "unknown"
    predictions: int  # how many logged predictions carry this ride's label
    stored_actual: float | None = None  # the label kept, for a duplicate or a conflict


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "..."


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
    prediction_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class PredictionLog:
    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)
            for table, column, statements in _MIGRATIONS:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    for statement in statements:
                        conn.execute(statement)
            conn.executescript(_POST_MIGRATION)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        # SQLite connections must not cross fork() (gunicorn forks workers from the master):
        # a connection is used only by the process, and thread, that opened it.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._local.conn = self._connect()
            self._local.pid = os.getpid()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def append(self, records: Iterable[PredictionRecord], request_digest: str | None = None) -> int:
        """Log a request's predictions in one transaction. Rows whose ``prediction_id`` is
        already logged are a retry and are kept once, but only when ``request_digest`` matches
        the logged one: otherwise :class:`IdempotencyConflict` and nothing is written."""
        rows = [
            (
                r.prediction_id,
                request_digest,
                r.features.get(PICKUP),
                r.ts,
                r.request_key,
                r.variant,
                int(r.shadow),
                r.model_version,
                json.dumps(r.features, separators=(",", ":")),
                float(r.prediction),
                r.latency_ms,
            )
            for r in records
        ]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows and request_digest is not None:  # without a key, ids are fresh uuids
                logged = conn.execute(
                    "SELECT request_digest FROM predictions WHERE prediction_id = ?", (rows[0][0],)
                ).fetchone()
                if logged is not None and logged[0] != request_digest:
                    raise IdempotencyConflict(rows[0][0])
            conn.executemany(
                # OR IGNORE: a retried request (same idempotency key and body) is logged once.
                "INSERT OR IGNORE INTO predictions (prediction_id, request_digest, event_time, ts,"
                " request_key, variant, shadow, model_version, features, prediction, latency_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

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
        conn = self._conn
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [self._label(conn, key, float(actual), now) for key, actual in labels]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _label(conn: sqlite3.Connection, key: str, actual: float, now: float) -> Labelled:
        stored = conn.execute(
            "SELECT actual FROM feedback WHERE request_key = ?", (key,)
        ).fetchone()
        if stored is not None:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM predictions WHERE request_key = ? AND actual IS NOT NULL",
                (key,),
            ).fetchone()
            same = abs(stored[0] - actual) < _SAME_LABEL_MIN
            return Labelled("duplicate" if same else "conflict", int(count), float(stored[0]))
        count = conn.execute(
            "UPDATE predictions SET actual = ? WHERE request_key = ?", (actual, key)
        ).rowcount
        if count == 0:
            return Labelled("unknown", 0)
        conn.execute(
            "INSERT INTO feedback (request_key, actual, ts) VALUES (?, ?, ?)", (key, actual, now)
        )
        return Labelled("stored", count)

    def event_time_of(self, request_key: str) -> str | None:
        row = self._conn.execute(
            "SELECT event_time FROM predictions WHERE request_key = ? LIMIT 1", (request_key,)
        ).fetchone()
        return row[0] if row else None

    def record_rejections(self, rejections: Iterable[Rejection]) -> None:
        rows = [
            (
                r.ts,
                _cut(r.event_time, 32),
                r.route,
                _cut(r.request_key, _MAX_KEY_CHARS),
                _cut(r.field, _MAX_TEXT_CHARS),
                _cut(r.message, _MAX_TEXT_CHARS),
            )
            for r in rejections
        ]
        if rows:
            self._conn.executemany(
                "INSERT INTO rejections (ts, event_time, route, request_key, field, message)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )

    def window(self, start: str, end: str) -> pd.DataFrame:
        """Predictions whose ride started in [start, end) (ISO 8601), with labels if any."""
        conn = self._conn
        (inside,) = conn.execute(
            "SELECT COUNT(*) FROM predictions WHERE event_time >= ? AND event_time < ?",
            (start, end),
        ).fetchone()
        (total,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM predictions").fetchone()
        # A window that is a large part of the log is read faster by one scan in insertion
        # order than by an index lookup per row ("+" keeps SQLite off the index).
        column = "+event_time" if inside > 0.1 * total else "event_time"
        query = _WINDOW_QUERY.format(column=column)
        frame = pd.read_sql_query(query, conn, params=(start, end))
        frame["trip_distance"] = frame["trip_distance"].astype("float64")
        frame["actual"] = frame["actual"].astype("float64")
        return frame

    def rejected(self, start: str, end: str) -> dict[str, int]:
        """Distinct rides refused per route in [start, end) of event time (a ride refused in a
        batch and again on its own counts once)."""
        rows = self._conn.execute(
            "SELECT route, COUNT(DISTINCT COALESCE(request_key, 'row:' || id)) FROM rejections "
            "WHERE event_time >= ? AND event_time < ? GROUP BY route",
            (start, end),
        ).fetchall()
        return {route: int(n) for route, n in rows}

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    def labelled_errors(
        self,
        since: float | None = None,
        until: float | None = None,
        versions: dict[str, str] | None = None,
        actual_range: tuple[float, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Prediction minus actual, per variant, for labelled predictions in a time window.

        Shadow predictions count for their variant: in shadow mode they are green's evidence.
        ``versions`` (variant -> model version) keeps only those pairs: the evidence about the
        models deployed now, not about earlier occupants of the slots. ``actual_range`` keeps
        labels inside the modelled range (what the models were trained and validated on).
        """
        # the label copied onto the prediction when it arrived, as monitoring reads it: a
        # prediction logged after its ride's label (a reused ride id) is not labelled
        query = (
            "SELECT p.variant, p.prediction - p.actual FROM predictions p "
            "WHERE p.actual IS NOT NULL AND p.ts >= ? AND p.ts < ?"
        )
        params: list[Any] = [
            since if since is not None else -np.inf,
            until if until is not None else np.inf,
        ]
        if actual_range is not None:
            query += " AND p.actual >= ? AND p.actual <= ?"
            params += list(actual_range)
        if versions:
            pairs = " OR ".join("(p.variant = ? AND p.model_version = ?)" for _ in versions)
            query += f" AND ({pairs})"
            for variant, version in versions.items():
                params += [variant, version]
        rows = self._conn.execute(query, params).fetchall()
        out: dict[str, list[float]] = {"blue": [], "green": []}
        for variant, error in rows:
            out.setdefault(variant, []).append(error)
        return {variant: np.asarray(errors) for variant, errors in out.items()}

    def frame(self, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Predictions in a window with their features and label (NaN until one arrives)."""
        query = "SELECT p.* FROM predictions p WHERE p.ts >= ? AND p.ts < ? ORDER BY p.id"
        params = (since if since is not None else -np.inf, until if until is not None else np.inf)
        frame = pd.read_sql_query(query, self._conn, params=params)
        features = pd.json_normalize(frame.pop("features").map(json.loads).tolist())
        return pd.concat([frame, features], axis=1)
