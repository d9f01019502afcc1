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

    def render(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """gunicorn ``child_exit`` hook: let live gauges forget a dead worker."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
