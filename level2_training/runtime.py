"""Process-wide setup for MLflow and Prefect, done once by the CLI before either is imported.

Prefect reads its settings from the environment when it is imported, so these variables must be
set first. Embedded mode keeps every store under TAXI_MLOPS_HOME; setting MLFLOW_TRACKING_URI or
PREFECT_API_URL switches to servers with no code change.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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
