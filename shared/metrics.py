"""Operational metrics in Prometheus text format, correct under several gunicorn workers.

Under gunicorn each worker is a process with its own counters. prometheus_client's multiprocess
mode keeps them in files under ``PROMETHEUS_MULTIPROC_DIR`` and sums them at scrape time; that
variable must be set before prometheus_client is imported (the runner does it), so this module
is only imported by service factories.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90)


class ServiceMetrics:
    """Requests, errors, latency and predictions, labelled by endpoint and ``extra_labels``."""

    def __init__(self, namespace: str, extra_labels: Sequence[str] = ()) -> None:
        self.registry = CollectorRegistry()
        labels = ["endpoint", *extra_labels]
        self.requests = Counter(
            "requests",
            "HTTP requests by endpoint and status code.",
            [*labels, "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.errors = Counter(
            "errors",
            "Requests answered with a 4xx or 5xx status.",
            [*labels, "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.latency = Histogram(
            "request_latency_seconds",
            "Time to answer a request.",
            labels,
            namespace=namespace,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions",
            "Rides scored.",
            extra_labels,
            namespace=namespace,
            registry=self.registry,
        )
        self._children: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._scored: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        self._pending = _PendingOwner()
        self.predicted_minutes = Histogram(
            "predicted_duration_minutes",
            "Predicted trip durations.",
            extra_labels,
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def observe(self, endpoint: str, status: int, seconds: float, **labels: str) -> None:
        key = (endpoint, status, *labels.items())
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._labelled(endpoint, status, labels)
        requests, errors, latency = children
        pending = self._pending.now()
        with pending.lock:
            pending.add(requests, 1)
            if errors is not None:
                pending.add(errors, 1)
            pending.observe(latency, seconds)

    def _labelled(self, endpoint: str, status: int, labels: dict[str, str]) -> tuple[Any, ...]:
        """The three series one request touches, looked up once per label set (the lookups
        cost more than the increments, on every request)."""
        code = str(status)
        return (
            self.requests.labels(endpoint=endpoint, status=code, **labels),
            self.errors.labels(endpoint=endpoint, status=code, **labels) if status >= 400 else None,
            self.latency.labels(endpoint=endpoint, **labels),
        )

    def scored(self, durations: np.ndarray, **labels: str) -> None:
        """Count ``durations`` as rides scored (under ``labels``) and observe each in the
        predicted-duration histogram."""
        counter, histogram = self._scored_series(labels)
        pending = self._pending.now()
        with pending.lock:
            pending.add(counter, len(durations))
            pending.observe(histogram, durations)

    def counted(self, rides: int, **labels: str) -> None:
        """Count ``rides`` as scored (under ``labels``), without their durations."""
        counter, _ = self._scored_series(labels)
        pending = self._pending.now()
        with pending.lock:
            pending.add(counter, rides)

    def _scored_series(self, labels: dict[str, str]) -> tuple[Any, Any]:
        key = tuple(labels.items())
        series = self._scored.get(key)
        if series is None:
            series = self._scored[key] = (
                self.predictions.labels(**labels) if labels else self.predictions,
                self.predicted_minutes.labels(**labels) if labels else self.predicted_minutes,
            )
        return series

    def flush(self) -> None:
        """Write what this process has counted since the last flush into the metrics (the
        multiprocess folder's files, under gunicorn)."""
        self._pending.now().flush()

    def render(self) -> tuple[bytes, str]:
        self.flush()  # this worker's own counts are current; the others' are FLUSH_S old
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: fork()s this process has come through as the child
_FORKS = [0]
os.register_at_fork(after_in_child=lambda: _FORKS.__setitem__(0, _FORKS[0] + 1))

#: how long a count may wait in a worker's memory before it reaches the metrics
FLUSH_S = 0.05
_ALL: weakref.WeakSet[_Pending] = weakref.WeakSet()


class _Pending:
    """Counts and observations not yet written to their metrics, and the thread that writes
    them every ``FLUSH_S``.

    Under gunicorn each increment of a metric writes a file-backed page (prometheus_client's
    multiprocess mode) under a process-wide lock: the six a one-ride request makes cost a
    fifth of a level-1 worker's time under load. Here a request adds to a dict, and the
    writer applies each series' total once per flush (histograms in bulk: observe_many). A
    scrape sees this worker's counts at once (render flushes first) and other workers' at
    most ``FLUSH_S`` late: Prometheus scrapes every few seconds. A worker flushes what is
    left when it exits (gunicorn's worker_exit hook, :func:`flush_all`)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.forks = _FORKS[0]
        self.lock = threading.Lock()
        self.flushing = threading.Lock()
        self.counts: dict[Any, float] = {}
        self.values: dict[Any, list[Any]] = {}
        self._writer: threading.Thread | None = None
        _ALL.add(self)

    def add(self, series: Any, amount: float) -> None:
        self.counts[series] = self.counts.get(series, 0) + amount
        self._wake()

    def observe(self, histogram: Any, values: Any) -> None:
        self.values.setdefault(histogram, []).append(values)
        self._wake()

    def _wake(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(
                target=_write_loop, args=(weakref.ref(self),), name="metrics-flush", daemon=True
            )
            self._writer.start()

    def flush(self) -> None:
        with self.flushing:  # in order: two flushes never interleave their writes
            with self.lock:
                counts, self.counts = self.counts, {}
                values, self.values = self.values, {}
            for series, amount in counts.items():
                series.inc(amount)
            for histogram, observed in values.items():
                observe_many(histogram, np.concatenate([np.ravel(v) for v in observed]))


def _write_loop(ref: weakref.ref[_Pending]) -> None:
    """Flush every ``FLUSH_S`` for as long as the metrics exist (a weak reference: a test's
    many short-lived apps do not leave a thread each)."""
    while True:
        time.sleep(FLUSH_S)
        pending = ref()
        if pending is None:
            return
        pending.flush()
        del pending


class _PendingOwner:
    """One process's :class:`_Pending` (a new one after fork(): the parent's lock and thread
    do not come along)."""

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    def now(self) -> _Pending:
        pending = self._pending
        # a count of forks rather than os.getpid(), a system call on every request
        if pending is None or pending.forks != _FORKS[0]:
            pending = self._pending = _Pending()
        return pending


def flush_all() -> None:
    """Write every metric's pending counts (gunicorn's ``worker_exit`` hook)."""
    for pending in list(_ALL):
        if pending.pid == os.getpid():
            pending.flush()


#: below this many values a histogram observes them one by one
_BULK_FROM = 8


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe every value in ``values``, as ``histogram.observe`` would one by one, with one
    increment per bucket: per value, the observation costs more than the prediction in a
    1,000-ride batch (a third of level 1's time). prometheus_client has no bulk observe; its
    buckets are counters in which a value counts once, in the first bucket whose bound it does
    not exceed (summed into the cumulative ``le`` series when rendered), which is what
    ``searchsorted(..., side="left")`` finds. A NaN counts in no bucket, either way. Where a
    later prometheus_client keeps them elsewhere, values are observed one by one."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    values = np.asarray(values, dtype=np.float64).ravel()
    if buckets is None or bounds is None or total is None or len(values) < _BULK_FROM:
        for value in values.tolist():
            histogram.observe(value)
        return
    index = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(index, minlength=len(bounds) + 1)[: len(bounds)]
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))


def mark_worker_dead(pid: int) -> None:
    """gunicorn ``child_exit`` hook: let live gauges forget a dead worker."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
