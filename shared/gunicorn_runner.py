"""Run a WSGI app factory under gunicorn from Python, the way every project service runs.

Services are never run on Flask's development server. By default the factory runs once in the
gunicorn master (``preload_app``), so the model is loaded before workers fork and shared
copy-on-write; apps that talk to MLflow's store build themselves in each worker instead.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from gunicorn.app.base import BaseApplication

from shared.gunicorn_worker import (
    DEFAULT_CLIENT_TIMEOUT_S,
    DEFAULT_REQUESTS_PER_CONNECTION,
    bounded_thread_worker,
)


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    #: threads per worker: a client stalled mid-request holds one for up to client_timeout_s
    threads: int = 8
    #: a client's socket reads and writes give up after this long (shared/gunicorn_worker.py)
    client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S
    #: a keep-alive connection is closed after this many requests, so that connections spread
    #: over the workers again (shared/gunicorn_worker.py); 0: never
    requests_per_connection: int = DEFAULT_REQUESTS_PER_CONNECTION
    timeout_s: int = 30
    pidfile: Path | None = None
    metrics_dir: Path | None = None  # Prometheus multiprocess folder, emptied at start
    access_log: bool = False
    #: build the app once in the master and fork it (fast, shares memory); False builds it in
    #: each worker, for apps whose libraries hold connections that must not cross fork()
    preload: bool = True


def service_options(
    name: str,
    run_dir: Path,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    access_log: bool = False,
    preload: bool = True,
) -> ServerOptions:
    """A project service's options: its pid file and metrics folder live under ``run_dir``,
    named by the service and its port, so two services on one machine never share them."""
    return ServerOptions(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        access_log=access_log,
        preload=preload,
        pidfile=run_dir / f"{name}-{port}.pid",
        metrics_dir=run_dir / f"{name}-{port}-metrics",
    )


def prepare_metrics_dir(metrics_dir: Path) -> None:
    """Start with an empty multiprocess folder (stale files would be summed into new counters)
    and switch prometheus_client to it.

    prometheus_client picks its value class (in memory, or files in the multiprocess folder)
    once, when it is first imported, and something (MLflow, Prefect) may have imported it
    before this runs: so the choice is made again here, before any metric exists. Otherwise
    every worker counts in its own memory and a scrape of the folder finds nothing.
    """
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


class _Application(BaseApplication):
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def _child_exit(server: Any, worker: Any) -> None:
    from shared.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    from shared.metrics import flush_all

    flush_all()  # what the worker counted in its last FLUSH_S


def _post_worker_init(worker: Any) -> None:
    # One request runs on one core: OpenMP's thread pool (HistGradientBoosting's predict)
    # would have every worker spin on every core for one row, ~2.5x slower per request.
    # Here, not in post_fork: a SIGTERM that arrives before the worker installs its own signal
    # handlers is swallowed, and a slow post_fork left workers running after the master.
    from threadpoolctl import threadpool_limits

    from shared import whole_response

    threadpool_limits(limits=1)
    # The app and its libraries (sklearn, pandas, MLflow) are hundreds of thousands of objects
    # that live as long as the worker: out of the cyclic collector's reach, its full passes
    # stop walking them while requests wait (5 % of a 1,000-ride request at level 3). No
    # collection first: it would write to every object's header, and copy the pages a
    # preloaded app shares with its master.
    gc.freeze()
    # a worker killed mid-response must leave nothing half-sent, or no load balancer can retry
    whole_response.install()


def worker_pids(master_pid: int) -> list[int] | None:
    """The processes a gunicorn master runs now (its children): on Linux from
    ``/proc/<pid>/task/<pid>/children`` (the master forks its workers from its main thread),
    one read where psutil would scan every process (level 3's /health asks on every answer);
    elsewhere (macOS, a kernel without that file) from psutil. None when neither can tell
    (the master gone)."""
    try:
        text = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text()
    except OSError:
        return _children_by_psutil(master_pid)
    return sorted(int(pid) for pid in text.split())


def _children_by_psutil(master_pid: int) -> list[int] | None:
    try:
        return sorted(child.pid for child in psutil.Process(master_pid).children())
    except psutil.Error:
        return None


def run(factory: Callable[[], Any], options: ServerOptions) -> None:
    """Serve ``factory()`` until SIGTERM/SIGINT. Blocks."""
    if options.metrics_dir is not None:
        prepare_metrics_dir(options.metrics_dir)
    config: dict[str, Any] = {
        "bind": f"{options.host}:{options.port}",
        "workers": options.workers,
        "threads": options.threads,
        # one thread: gunicorn's sync worker (the fastest for a CPU-bound model, but a client
        # that stalls mid-request holds the whole worker until `timeout_s` kills it)
        "worker_class": (
            bounded_thread_worker(options.client_timeout_s, options.requests_per_connection)
            if options.threads > 1
            else "sync"
        ),
        "timeout": options.timeout_s,
        "graceful_timeout": 10,
        "preload_app": options.preload,
        "errorlog": "-",
        "accesslog": "-" if options.access_log else None,
        "child_exit": _child_exit,
        "worker_exit": _worker_exit,
        "post_worker_init": _post_worker_init,
        "proc_name": "taxi-mlops",
        # gunicorn >= 25 opens a control socket in $HOME by default; two services (or a
        # test and a user's server) would fight over it. Nothing here uses gunicornc.
        "control_socket_disable": True,
        # JSON answers only; gunicorn's sendfile path would write headers on their own
        # (shared/whole_response.py)
        "sendfile": False,
    }
    if options.pidfile is not None:
        options.pidfile.parent.mkdir(parents=True, exist_ok=True)
        config["pidfile"] = str(options.pidfile)
    _Application(factory, config).run()
