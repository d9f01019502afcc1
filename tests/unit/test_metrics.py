"""shared/metrics.py: the writer thread that moves a worker's counts into its metrics."""

from __future__ import annotations

import logging
import time

import pytest
from prometheus_client import generate_latest

from shared.metrics import ServiceMetrics


def test_the_writer_outlives_a_flush_that_fails(caplog: pytest.LogCaptureFixture) -> None:
    """A flush that raises is logged, and the next one writes the counts: were the thread to
    end, the counts would wait for a scrape served by this worker."""
    metrics = ServiceMetrics("outlives")
    real, calls = metrics.flush, []

    def fails_once() -> None:
        calls.append(None)
        if len(calls) == 1:
            raise OSError("No space left on device")
        real()

    metrics.flush = fails_once  # type: ignore[method-assign]
    series = 'outlives_requests_total{endpoint="/predict",status="200"} 1.0'
    with caplog.at_level(logging.ERROR, logger="shared.metrics"):
        metrics.observe("/predict", 200, 0.01)  # starts the writer thread
        deadline = time.monotonic() + 5
        while series not in (text := generate_latest(metrics.registry).decode()):
            assert time.monotonic() < deadline, text
            time.sleep(0.01)
    assert len(calls) >= 2
    assert "writing the metrics failed (will retry)" in caplog.text
    assert "No space left on device" in caplog.text
