"""Load for the serving tests: single-ride requests from several threads, every answer kept."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from collections import Counter

from shared.services import http_json


class Traffic:
    """Single-ride requests from a pool of ride ids, from several threads, until stopped."""

    def __init__(
        self,
        url: str,
        keys: int = 800,
        threads: int = 6,
        retries: int = 0,
        prefix: str = "ride",
        retry_statuses: tuple[int, ...] = (),
        request_ids: bool = True,
    ) -> None:
        """``request_ids``: send each request with an X-Request-Id (a retry then reuses it);
        without, a request is logged once per time it is sent."""
        self.retries, self.retry_statuses = retries, retry_statuses
        self.request_ids = request_ids
        #: every attempt: (status, seconds until its answer)
        self.attempts: list[tuple[int, float]] = []
        self.url, self.keys = url, [f"{prefix}-{i}" for i in range(keys)]
        self.results: list[tuple[float, float, str, int, str, str]] = []
        self._counter, self._lock, self._stop = (
            itertools.count(),
            threading.Lock(),
            threading.Event(),
        )
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            key = self.keys[next(self._counter) % len(self.keys)]
            sent = time.monotonic()
            ride = {
                "ride_id": key,
                "PULocationID": 161,
                "DOLocationID": 236,
                "trip_distance": 2.5,
                "pickup_datetime": "2019-02-11T08:30:00",
            }
            # Like a load balancer: retry a request whose connection failed, with the same
            # idempotency key, so the service logs it once.
            headers = {"X-Request-Id": f"{key}-{sent}"} if self.request_ids else {}
            for attempt in range(self.retries + 1):
                began = time.monotonic()
                try:
                    status, body = http_json(
                        "POST", f"{self.url}/predict", ride, timeout=30, headers=headers
                    )
                    with self._lock:
                        self.attempts.append((status, time.monotonic() - began))
                    if status not in self.retry_statuses or attempt == self.retries:
                        break
                    time.sleep(0.05)
                except (OSError, http.client.HTTPException) as exc:
                    # A worker killed mid-response truncates the body (IncompleteRead): as
                    # failed as a reset connection, and retried the same way.
                    status, body = 0, {"variant": f"failed: {exc}", "model_version": ""}
                    if attempt < self.retries:
                        time.sleep(0.05)
            with self._lock:
                self.results.append(
                    (
                        sent,
                        time.monotonic(),
                        key,
                        status,
                        body.get("variant", ""),
                        body.get("model_version", ""),
                    )
                )

    def wait_for(self, count: int, since: float, timeout_s: float = 120.0) -> None:
        """Block until ``count`` requests were sent at or after ``since`` (monotonic)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                done = sum(1 for r in self.results if r[0] >= since)
            if done >= count:
                return
            time.sleep(0.2)
        with self._lock:
            statuses = Counter(status for status, _ in self.attempts)
        raise AssertionError(
            f"only {done} of {count} requests in {timeout_s:.0f} s (every attempt's status "
            f"so far: {dict(statuses)})"
        )

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
