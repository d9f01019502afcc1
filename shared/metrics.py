"""Operational metrics in Prometheus text format, correct under several gunicorn workers.

Under gunicorn each worker is a process with its own counters. prometheus_client's multiprocess
mode keeps them in files under ``PROMETHEUS_MULTIPROC_DIR`` and sums them at scrape time; that
variable must be set before prometheus_client is imported (the runner does it), so this module
is only imported by service factories.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
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

from shared.log_throttle import LogThrottle

logger = logging.getLogger(__name__)

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
        self._pending: _Pending | None = None
        _ALL.add(self)
        self.predicted_minutes = Histogram(
            "predicted_duration_minutes",
            "Predicted trip durations.",
            extra_labels,
            namespace=namespace,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def observe(self, endpoint: str, status: int, seconds: float, **labels: str) -> None:
        """One request: counted, and its latency observed, at the next flush."""
        key = (endpoint, status, tuple(labels.items()))
        pending = self._now()
        with pending.lock:
            latencies = pending.requests.get(key)
            if latencies is None:
                pending.requests[key] = [seconds]
            else:
                latencies.append(seconds)

    def scored(self, durations: np.ndarray, **labels: str) -> None:
        """Count ``durations`` as rides scored (under ``labels``) and observe each in the
        predicted-duration histogram."""
        key = tuple(labels.items())
        pending = self._now()
        with pending.lock:
            pending.scored.setdefault(key, []).append(durations)

    def counted(self, rides: int, **labels: str) -> None:
        """Count ``rides`` as scored (under ``labels``), without their durations."""
        key = tuple(labels.items())
        pending = self._now()
        with pending.lock:
            pending.counted[key] = pending.counted.get(key, 0) + rides

    def flush(self) -> None:
        """Write what this process has counted since the last flush into the metrics (the
        multiprocess folder's files, under gunicorn)."""
        pending = self._pending
        if pending is None or pending.forks != _FORKS[0]:
            return  # nothing counted in this process (a parent's counts are the parent's)
        with pending.flushing:  # in order: two flushes never interleave their writes
            with pending.lock:
                requests, pending.requests = pending.requests, {}
                scored, pending.scored = pending.scored, {}
                counted, pending.counted = pending.counted, {}
            for (endpoint, status, labels), latencies in requests.items():
                total, errors, latency = self._request_series(endpoint, status, dict(labels))
                total.inc(len(latencies))
                if errors is not None:
                    errors.inc(len(latencies))
                observe_many(latency, np.asarray(latencies, dtype=np.float64))
            for labels, arrays in scored.items():
                values = np.concatenate([np.ravel(a) for a in arrays])
                self._labelled(self.predictions, labels).inc(len(values))
                observe_many(self._labelled(self.predicted_minutes, labels), values)
            for labels, rides in counted.items():
                self._labelled(self.predictions, labels).inc(rides)

    def _request_series(self, endpoint: str, status: int, labels: dict[str, str]) -> tuple:
        """The three series a request counts in (errors: None below 400)."""
        code = str(status)
        return (
            self.requests.labels(endpoint=endpoint, status=code, **labels),
            self.errors.labels(endpoint=endpoint, status=code, **labels) if status >= 400 else None,
            self.latency.labels(endpoint=endpoint, **labels),
        )

    @staticmethod
    def _labelled(metric: Any, labels: tuple[tuple[str, str], ...]) -> Any:
        return metric.labels(**dict(labels)) if labels else metric

    def _now(self) -> _Pending:
        """This process's pending counts, made (with their writer thread) by the first
        request after a fork: a count of forks is checked, not os.getpid(), a system call."""
        pending = self._pending
        if pending is not None and pending.forks == _FORKS[0]:
            return pending
        with _MAKING[0]:  # two threads' first requests make one, not one each
            pending = self._pending
            if pending is None or pending.forks != _FORKS[0]:
                pending = self._pending = _Pending()
                writer = threading.Thread(
                    target=_write_loop, args=(weakref.ref(self),), name="metrics-flush", daemon=True
                )
                writer.start()
        return pending

    def render(self) -> tuple[bytes, str]:
        self.flush()  # this worker's own counts are current; the others' are FLUSH_S old
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: how long a count may wait in a worker's memory before it reaches the metrics
FLUSH_S = 0.05
#: a flush that keeps failing is logged once in this many seconds (not every FLUSH_S)
_FAILURE_LOG_S = 60.0
#: fork()s this process has come through as the child
_FORKS = [0]
#: held while a process's pending counts are made (a new lock after fork: one copied from the
#: parent could be held by a thread that did not come along)
_MAKING = [threading.Lock()]


def _forked() -> None:
    _FORKS[0] += 1
    _MAKING[0] = threading.Lock()


os.register_at_fork(after_in_child=_forked)
_ALL: weakref.WeakSet[ServiceMetrics] = weakref.WeakSet()


@dataclass
class _Pending:
    """One process's counts and observations not yet written to their metrics (a new one
    after fork(): the parent's locks and thread do not come along).

    Under gunicorn each increment of a metric writes a file-backed page (prometheus_client's
    multiprocess mode) under a process-wide lock: the six a one-ride request made cost a
    tenth of a level-1 worker's time under load. Here a request appends to a list, and a
    writer thread applies each series' total every ``FLUSH_S`` (histograms in bulk:
    observe_many). A scrape sees this worker's counts at once (render flushes first) and the
    other workers' at most ``FLUSH_S`` late (Prometheus scrapes every few seconds). A worker
    flushes what is left when it exits (gunicorn's worker_exit hook, :func:`flush_all`)."""

    forks: int = field(default_factory=lambda: _FORKS[0])
    lock: threading.Lock = field(default_factory=threading.Lock)
    flushing: threading.Lock = field(default_factory=threading.Lock)
    #: (endpoint, status, labels) -> latencies in seconds
    requests: dict[tuple[Any, ...], list[float]] = field(default_factory=dict)
    #: labels -> arrays of predicted durations
    scored: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    #: labels -> rides counted without durations
    counted: dict[tuple[Any, ...], int] = field(default_factory=dict)


def _write_loop(ref: weakref.ref[ServiceMetrics]) -> None:
    """Flush every ``FLUSH_S`` for as long as the metrics exist (a weak reference: a test's
    many short-lived apps do not leave a thread each). A flush that fails is logged and the
    loop goes on: were the thread to end, this worker's counts would reach the metrics only
    when it serves a scrape itself, late and in a lump."""
    failures = LogThrottle(_FAILURE_LOG_S)
    while True:
        time.sleep(FLUSH_S)
        metrics = ref()
        if metrics is None:
            return
        try:
            metrics.flush()
        except Exception:
            if failures.due() is not None:
                logger.exception("writing the metrics failed (will retry)")
        del metrics


def flush_all() -> None:
    """Write every metric's pending counts (gunicorn's ``worker_exit`` hook)."""
    for metrics in list(_ALL):
        metrics.flush()


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
