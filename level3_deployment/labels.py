"""Labels for many rides in one transaction, by the *first label wins* rule.

A batch costs a few statements per chunk of rides, not several per label: the dispatch
system posts up to 5,000 labels at once, and at a statement per label such a batch took
4 s on SQLite (and a round trip per statement on PostgreSQL), which clients time out on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shared.statedb import tables
from shared.statedb.tables import insert_ignoring_duplicates

F = tables.feedback
P = tables.predictions

#: two labels for a ride agree when they differ by less than this (minutes)
SAME_LABEL_MIN = 1e-6
#: rides per IN list: well inside SQLite's limit on bound parameters
CHUNK = 500


@dataclass(frozen=True)
class Labelled:
    """What became of one label. The rule is *first label wins*: a ride's first label is
    stored; the same value again is a harmless retry; a different value is refused and the
    stored one kept; a label for a ride that has no logged prediction is not stored at all."""

    status: str  # "stored", "duplicate", "conflict" or "unknown"
    predictions: int  # how many logged predictions carry this ride's label
    stored_actual: float | None = None  # the label kept, for a duplicate or a conflict


def chunks(keys: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def label_rides(
    conn: Connection, dialect: str, labels: list[tuple[str, float]], now: float
) -> list[Labelled]:
    """Each label's outcome, in order. A ride's first label in the batch is the one offered
    for storing; a later one for the same ride is judged against what was kept."""
    known = _known(conn, dict.fromkeys(key for key, _ in labels))
    offered: dict[str, float] = {}
    for key, actual in labels:
        if key in known:
            offered.setdefault(key, actual)
    stored = _store(conn, dialect, offered, now)
    # a label stored now is the one offered; only the others are read back
    kept = {
        **_kept(conn, (k for k in offered if k not in stored)),
        **{k: float(offered[k]) for k in stored},
    }
    counts = _labelled_counts(conn, offered)
    outcomes = []
    judged: set[str] = set()
    for key, actual in labels:
        if key not in known:
            outcomes.append(Labelled("unknown", 0))
        elif key in stored and key not in judged:
            outcomes.append(Labelled("stored", counts.get(key, 0)))
        else:
            same = abs(kept[key] - actual) < SAME_LABEL_MIN
            status = "duplicate" if same else "conflict"
            outcomes.append(Labelled(status, counts.get(key, 0), kept[key]))
        judged.add(key)
    return outcomes


def _known(conn: Connection, keys: Iterable[str]) -> set[str]:
    """The rides that have a logged prediction."""
    found: set[str] = set()
    for batch in chunks(keys):
        query = sa.select(P.c.request_key).distinct().where(P.c.request_key.in_(batch))
        found.update(conn.execute(query).scalars())
    return found


def _store(conn: Connection, dialect: str, offered: dict[str, float], now: float) -> set[str]:
    """Insert the offered labels, keeping any stored first (a unique key: of two concurrent
    first labels exactly one is stored), and copy the new ones onto their predictions. The
    rides whose label was stored now, as the database returned them."""
    if not offered:
        return set()
    insert = insert_ignoring_duplicates(dialect, F, "request_key").returning(F.c.request_key)
    rows = [{"request_key": k, "actual": float(v), "ts": now} for k, v in offered.items()]
    stored = set(conn.execute(insert, rows).scalars())
    # one statement per chunk: psycopg2 runs an executemany as a round trip per row
    label = sa.select(F.c.actual).where(F.c.request_key == P.c.request_key).scalar_subquery()
    for batch in chunks(stored):
        conn.execute(sa.update(P).where(P.c.request_key.in_(batch)).values(actual=label))
    return stored


def _kept(conn: Connection, keys: Iterable[str]) -> dict[str, float]:
    """The label stored for each ride."""
    kept: dict[str, float] = {}
    for batch in chunks(keys):
        query = sa.select(F.c.request_key, F.c.actual).where(F.c.request_key.in_(batch))
        kept.update((key, float(actual)) for key, actual in conn.execute(query))
    return kept


def _labelled_counts(conn: Connection, keys: Iterable[str]) -> dict[str, int]:
    """How many logged predictions of each ride carry a label."""
    counts: dict[str, int] = {}
    for batch in chunks(keys):
        query = (
            sa.select(P.c.request_key, sa.func.count())
            .where(P.c.request_key.in_(batch), P.c.actual.is_not(None))
            .group_by(P.c.request_key)
        )
        counts.update((key, int(n)) for key, n in conn.execute(query))
    return counts
