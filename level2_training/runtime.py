"""Process-wide setup for MLflow and Prefect, done once by the CLI before either is imported.

Prefect reads its settings from the environment when it is imported, so these variables must be
set first. Embedded mode keeps every store under TAXI_MLOPS_HOME; setting MLFLOW_TRACKING_URI or
PREFECT_API_URL switches to servers with no code change.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import TaxiMlopsError
from shared.settings import Settings


def configure(settings: Settings) -> None:
    defaults = {
        # MLflow reads the string "true"; both libraries phone home unless told not to.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The temporary server needs ~5 s here; slow CI machines need more.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "GIT_PYTHON_REFRESH": "quiet",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if settings.prefect_api_url:
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    if settings.mlflow_tracking_uri is None:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    # the Prefect home in use (a caller may keep its own: a replay keeps its caller's)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


def boot_embedded_prefect() -> Callable[[], None]:
    """In embedded mode, start Prefect's temporary server now, in the background; return a
    function that waits until it answers. Call after :func:`configure`.

    Prefect starts that server (a process of its own) when a flow first needs its API, and the
    flow waits for it: ~7 s on a 2-core machine, ~20 s in a new home (its database is created
    first). Started before the command imports its flow, the server boots while the imports
    run, and a training run is that much sooner. A new home's database is first copied from a
    migrated template (:mod:`level2_training.prefect_template`). With PREFECT_API_URL set there
    is nothing to start. A server that fails to start here is started again by the flow, which
    reports why.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return lambda: None
    from prefect.server.api.server import SubprocessASGIServer

    # the instance Prefect's client will ask for: one per process (Prefect keeps it by port)
    boot = threading.Thread(
        target=_start_quietly, args=(SubprocessASGIServer(),), name="prefect-boot", daemon=True
    )
    boot.start()
    return boot.join


def _start_quietly(server: Any) -> None:
    from level2_training.prefect_template import seed_default_database

    try:
        seed_default_database()
        server.start()
    except Exception:  # the flow starts it again and reports the error where it belongs
        logging.getLogger(__name__).debug("early start of Prefect's server failed", exc_info=True)


def artifact_location(settings: Settings) -> str | None:
    """Local stores keep artifacts under home; a tracking server decides for itself."""
    if settings.embedded_mlflow:
        return (settings.mlflow_dir / "artifacts").as_uri()
    return None


class _DropExpectedTracebacks(logging.Filter):
    """Keep the log line of an expected error, drop its traceback.

    Prefect logs a task's exception with its traceback. For a :class:`TaxiMlopsError` (bad data,
    a missing file) the message already names the file and the problem, and the CLI reports it:
    a traceback would only hide it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TaxiMlopsError):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_expected_tracebacks() -> None:
    """Call after importing Prefect (which installs its console handler on the root logger)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DropExpectedTracebacks) for f in handler.filters):
            handler.addFilter(_DropExpectedTracebacks())
