"""Operational metrics in Prometheus text format, correct under several gunicorn workers.

Under gunicorn each worker is a process with its own counters. prometheus_client's multiprocess
mode keeps them in files under ``PROMETHEUS_MULTIPROC_DIR`` and sums them at scrape time; that
variable must be set before prometheus_client is imported (the runner does it), so this module
is only imported by service factories.
"""

from __future__ import annotations

import os
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
        requests.inc()
        if errors is not None:
            errors.inc()
        latency.observe(seconds)

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
        counter = self.predictions.labels(**labels) if labels else self.predictions
        counter.inc(len(durations))
        observe_many(
            self.predicted_minutes.labels(**labels) if labels else self.predicted_minutes, durations
        )

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


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
