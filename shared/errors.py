"""Errors a user can act on. Each names the file, field or setting at fault; the CLI and the
services turn them into a one-line message (or a JSON error), never a stack trace."""


class TaxiMlopsError(Exception):
    """Base class: anything raised on purpose for bad input or a bad environment."""


class DataSourceError(TaxiMlopsError):
    """A data source (file, folder, URL) cannot be read."""


class SchemaError(DataSourceError):
    """A trip file lacks columns the pipeline needs."""


class DataQualityError(TaxiMlopsError):
    """A month of data failed the quality gate: it must not be trained on."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class ModelLoadError(TaxiMlopsError):
    """A model artifact is missing, unreadable or not a trip-duration pipeline."""


class PipelineRunError(TaxiMlopsError):
    """An orchestrated run (a Kubeflow pipeline) failed in one of its steps."""


class ConfigError(TaxiMlopsError, ValueError):
    """A parameter or setting has a value the project cannot use."""


#: how much of a client's value an error message repeats
_SHOWN_CHARS = 40


def shown(value: object) -> str:
    """A client's value as an error message repeats it: its repr, cut short (a message must
    not echo, or store, a megabyte the client sent)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
