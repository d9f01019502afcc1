"""The models one serving process holds: blue and green, kept in step with the deployment state.

Each gunicorn worker polls the state store (a cheap query) every ``poll_s`` seconds; on a new
generation it loads any model it lacks, health-checks it, and swaps the whole set in with one
reference assignment, so a request sees either the old set or the new one, never a mix. After a
promotion, the blue it replaced stays loaded (not routed to) until the next change, and a
worker started after the promotion loads it in the background, so a rollback does not wait for
the registry. A model that fails to load or to pass its health check is never routed to: its
traffic stays on blue, and the error shows in /health; the poller tries it again after 5 s,
then after waits that double up to a minute (the registry may have been down).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Any

import numpy as np

from level3_deployment.state import DeploymentState, StateStore
from shared.compiled import ServingModel, serving_model
from shared.errors import TaxiMlopsError
from shared.statedb.database import StateUnavailable

logger = logging.getLogger(__name__)

#: Rides every model must score sensibly before it gets traffic.
HEALTH_RIDES: dict[str, Any] = {
    "PULocationID": np.array([161.0, 132.0, 236.0]),
    "DOLocationID": np.array([236.0, 230.0, 161.0]),
    "trip_distance": np.array([2.1, 17.5, 1.2]),
    "pickup_datetime": np.array(
        ["2019-02-11T08:30", "2019-02-11T03:10", "2019-02-16T22:00"], dtype="datetime64[s]"
    ),
}


class HealthCheckError(Exception):
    pass


class UnknownVersion(TaxiMlopsError):  # noqa: N818 - reads as the HTTP answer: 404
    """The registry has no such version."""


def health_check(model: Any) -> None:
    predictions = np.asarray(model.predict(HEALTH_RIDES), dtype=float)
    if predictions.shape != (3,) or not np.all(np.isfinite(predictions)):
        raise HealthCheckError(f"non-finite or misshapen predictions: {predictions}")
    if not np.all((predictions > 0) & (predictions < 300)):
        raise HealthCheckError(f"implausible durations (minutes): {np.round(predictions, 1)}")


@dataclass(frozen=True)
class Active:
    state: DeploymentState
    models: dict[int, ServingModel]
    errors: dict[int, str] = field(default_factory=dict)

    def model(self, version: int | None) -> ServingModel | None:
        return None if version is None else self.models.get(version)


class SlotManager:
    def __init__(
        self,
        store: StateStore,
        load: Callable[[int], Any],
        *,
        poll_s: float = 0.5,
        compile_models: bool = True,
        native_dir: Path | None = None,
        standby_retry_s: float = 60.0,
        load_retry_s: float = 5.0,
    ) -> None:
        """``native_dir``: where tree models are built into native code (None: GTIL);
        ``standby_retry_s``: how long before a standby that failed to load is tried again;
        ``load_retry_s``: the same for a version the state routes to (doubling while it keeps
        failing, up to ``standby_retry_s``)."""
        self.store = store
        self.load = load
        self.poll_s = poll_s
        self.compile_models = compile_models
        self.native_dir = native_dir
        self.active = Active(DeploymentState(generation=-1), {})
        self._cache: dict[int, ServingModel] = {}
        #: when a standby that failed to load is tried again (monotonic()): a load takes
        #: seconds of a worker's CPU: not on every poll
        self._standby_retry_at: dict[int, float] = {}
        self.standby_retry_s = standby_retry_s
        self.load_retry_s = load_retry_s
        #: when versions of the state that failed to load are tried again (monotonic()), and
        #: how many refreshes in a row left one unloaded
        self._retry_at, self._failed_refreshes = float("inf"), 0
        self._lock = threading.Lock()
        #: guards the cache and the loads under way; held for lookups, never during a load
        self._cache_lock = threading.Lock()
        #: versions being loaded now, by any thread: a second caller waits for that load
        self._loading: dict[int, threading.Event] = {}
        self._poller_pid: int | None = None
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    def prepare(self, version: int) -> ServingModel:
        """Load a version, build its serving form (compiled when that gives the Pipeline's
        answers) and health-check it (cached). Raises if it is unusable. A version is loaded
        by one thread at a time: a rollback that needs the standby the poller is loading
        waits for that load instead of running a second one (seconds of a worker's CPU)."""
        while True:
            with self._cache_lock:
                cached = self._cache.get(version)
                if cached is not None:
                    return cached
                under_way = self._loading.get(version)
                if under_way is None:
                    done = self._loading[version] = threading.Event()
                    break
            # the other load either cached the model, or failed: then this caller loads
            under_way.wait()
        try:
            model = self._build(version)
            with self._cache_lock:
                self._cache[version] = model
            return model
        finally:
            with self._cache_lock:
                del self._loading[version]
            done.set()

    def _build(self, version: int) -> ServingModel:
        model = serving_model(
            self.load(version), compile_it=self.compile_models, native_dir=self.native_dir
        )
        logger.info("v%s serves through %s: %s", version, model.engine, model.reason)
        health_check(model)
        return model

    def refresh(self) -> Active:
        with self._lock:
            # Also on an unchanged state once a version it routes to is due another try: a
            # worker that booted while the registry was down would otherwise lack its blue
            # (and answer 503) until the next deployment change.
            same = self.store.generation() == self.active.state.generation
            if same and monotonic() < self._retry_at:
                return self.active
            state = self.store.current()
            models: dict[int, ServingModel] = {}
            errors: dict[int, str] = {}
            for version in (state.blue, state.green):
                if version is None:
                    continue
                try:
                    models[version] = self.prepare(version)
                except Exception as exc:  # any failure means: no traffic for this version
                    errors[version] = f"{type(exc).__name__}: {exc}"
                    logger.error("model v%s unusable: %s", version, errors[version])
            self.active = Active(state, models, errors)
            self._schedule_retry(bool(errors))
            # Keep what the state uses, and the blue a promotion replaced: a rollback is then a
            # swap on every worker that still holds it, not a reload from the registry.
            kept = {*models, state.previous_blue}
            with self._cache_lock:
                self._cache = {v: m for v, m in self._cache.items() if v in kept}
            return self.active

    def _schedule_retry(self, failed: bool) -> None:
        if not failed:
            self._retry_at, self._failed_refreshes = float("inf"), 0
            return
        wait = min(self.standby_retry_s, self.load_retry_s * 2**self._failed_refreshes)
        self._retry_at = monotonic() + wait
        self._failed_refreshes += 1

    def hold_standby(self) -> None:
        """Load the blue a promotion replaced, if this process lacks it: a worker started
        after the promotion (gunicorn replaced one, or the service restarted) then holds it as
        the others do, and a rollback is a swap there too. Off the request path (the poller
        calls it after each refresh); a version that cannot load is logged, and a rollback to
        it is refused by the worker that takes the call (level3_deployment/admin.py)."""
        version = self.active.state.previous_blue
        if version is None or version in self._cache:
            return
        if monotonic() < self._standby_retry_at.get(version, 0.0):
            return
        # not under the slots' lock: an admin call's refresh does not wait seconds for it,
        # unless it needs this very version (prepare: one load of a version at a time)
        try:
            self.prepare(version)
        except Exception as exc:
            self._standby_retry_at[version] = monotonic() + self.standby_retry_s
            logger.warning("v%s, which a rollback restores, is not loaded: %s", version, exc)

    def standby(self) -> tuple[int | None, bool]:
        """The version a rollback restores (None: there is none), and whether this process
        holds it ready."""
        version = self.active.state.previous_blue
        return version, version is not None and version in self._cache

    def ensure_polling(self) -> None:
        """Start this process's poller (after gunicorn forked it from the master)."""
        if self._poller_pid == os.getpid():
            return
        self._poller_pid = os.getpid()
        # locks and loads copied by fork() may belong to threads that do not exist here
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._loading = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="deployment-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop this process's poller and wait for it (before a fork, or at shutdown)."""
        self._stop.set()
        if self._poller is not None and self._poller_pid == os.getpid():
            self._poller.join(timeout=5 * self.poll_s + 5)
        self._poller_pid = None

    def _poll(self) -> None:
        unreadable_since: float | None = None  # an outage is logged when it starts and ends
        while not self._stop.is_set():
            try:
                self.refresh()
                if unreadable_since is not None:
                    logger.warning(
                        "deployment state readable again after %.1f s",
                        monotonic() - unreadable_since,
                    )
                    unreadable_since = None
                self.hold_standby()
            except StateUnavailable as exc:  # keep serving the last state it read
                if unreadable_since is None:
                    unreadable_since = monotonic()
                    logger.warning("deployment state unreadable (%s); retrying", exc)
            except Exception:
                logger.exception("refreshing the deployment state failed; retrying")
            self._stop.wait(self.poll_s)
