"""One typed settings object, read from environment variables (prefix ``TAXI_MLOPS_``).

Every path the project writes is derived from ``home`` so a whole run can be isolated by pointing
``TAXI_MLOPS_HOME`` at a temp folder. Steps never read settings themselves: the CLI and the
service factories read them once and pass plain values down.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError

TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAXI_MLOPS_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".taxi-mlops"), description="Root of all project state.")
    env: Literal["dev", "prod"] = Field(default="dev", description="dev allows insecure defaults.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    tlc_base_url: str = Field(default=TLC_BASE_URL, description="Where TLC monthly files live.")
    download_timeout_s: float = Field(default=60.0, gt=0)

    # Level 2: tracking, registry and orchestration. Unset means embedded (SQLite, local files,
    # a temporary Prefect server); the standard MLflow/Prefect variables switch to servers.
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TAXI_MLOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    prefect_api_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TAXI_MLOPS_PREFECT_API_URL", "PREFECT_API_URL")
    )
    # `taxi-mlops level2 server` (an MLflow tracking server): its backend store is PostgreSQL
    # when db_host is set (credentials as separate variables, so a secret store can inject
    # them), else this URI, else SQLite under home; artifacts go to this destination (an s3://
    # URI in the cloud), else a folder under home.
    mlflow_backend_store_uri: str | None = None
    mlflow_artifacts_destination: str | None = None
    db_host: str | None = None
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_name: str = "mlflow"
    db_user: str | None = None
    db_password: SecretStr = SecretStr("")
    #: names clients call the MLflow server by (comma-separated, ``host`` or ``host:port``,
    #: ``*`` wildcards): MLflow 3.17 answers 403 to any other Host header but loopback and
    #: private IPs, so ``http://mlflow:5000`` (compose) or an internal DNS name (AWS) must be
    #: listed. Loopback stays allowed.
    mlflow_allowed_hosts: str = ""

    experiment_name: str = "taxi-trip-duration"
    registered_model_name: str = "taxi-trip-duration"
    #: a candidate replaces the champion only if its RMSE is at least this much lower (relative)
    promotion_margin: float = Field(default=0.01, ge=0.0, lt=1.0)

    # Level 3: the bearer token for the serving admin API. Required (and not the dev default)
    # when env is prod.
    admin_token: SecretStr = SecretStr("")
    #: the bearer token for POST /feedback (labels): a scope of its own, so the system that
    #: reports how long rides took cannot move traffic. Required like the admin token.
    feedback_token: SecretStr = SecretStr("")
    #: how the services score: ``compiled`` (the default: a compiled predictor where it is
    #: proven equal to the model's Pipeline, the Pipeline otherwise; shared/compiled.py) or
    #: ``sklearn`` (always the Pipeline: an escape hatch, and the benchmarks' baseline)
    serving_engine: Literal["compiled", "sklearn"] = "compiled"
    #: boosted trees as native code (a C compiler builds each version once, when first loaded:
    #: shared/native_trees.py); False interprets them with Treelite's GTIL (no compiler needed)
    native_trees: bool = True
    #: level 3 logs a request's predictions (those without an X-Request-Id) to a journal file
    #: per process, ingested into the SQLite log in batches (shared/statedb/journal.py), rather
    #: than committing a transaction per request; no effect on PostgreSQL, which always commits
    prediction_journal: bool = True
    #: the level-3 service the level-3 admin commands and level 4 talk to (a load balancer in
    #: front of replicas, in scale-out mode)
    level3_url: str = "http://127.0.0.1:8100"
    #: how many gunicorn workers serve ``level3_url`` in all (replicas x workers, behind a load
    #: balancer): a deployment change is done once that many have applied it. Unset: the count
    #: the answering service reports, right for one service, too few behind a balancer
    level3_workers: int | None = Field(default=None, ge=1, le=1024)

    #: all operational state (level 3's deployments and prediction log, level 4's loop state,
    #: decisions and lock) in one database that every machine shares: a SQLAlchemy URL, e.g.
    #: ``postgresql+psycopg2://user:password@host:5432/taxi``. Unset: SQLite files under home.
    state_db_url: SecretStr | None = None
    #: the state database's user and password, when a secret store injects them apart from the
    #: URL (ECS puts an RDS-managed secret's ``username`` and ``password`` keys in two
    #: variables): they replace the URL's own
    state_db_user: str | None = None
    state_db_password: SecretStr | None = None

    # Scale-out mode on one machine (`taxi-mlops stack`): ports are offsets from a base, every
    # service binds 127.0.0.1. Artifacts go to this S3 endpoint (a moto server the stack starts
    # when unset); AWS credentials come from the usual AWS_* variables for a real endpoint.
    stack_port_base: int = Field(default=18000, ge=1024, le=65000)
    stack_replicas: int = Field(default=2, ge=1, le=8)
    s3_endpoint_url: str | None = None
    s3_bucket: str = "taxi-mlops-artifacts"
    #: the PostgreSQL server binaries (initdb, pg_ctl); found under /usr/lib/postgresql when unset
    pg_bin_dir: Path | None = None

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("level3_url", "s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return None if value is None else value.rstrip("/")

    @field_validator("tlc_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("TAXI_MLOPS_TLC_BASE_URL must start with http:// or https://")
        return value.rstrip("/")

    @property
    def state_url(self) -> str | None:
        """TAXI_MLOPS_STATE_DB_URL, with the separately given user and password put in."""
        if not self.state_db_url:
            if self.state_db_user or self.state_db_password:
                raise ConfigError(
                    "TAXI_MLOPS_STATE_DB_USER/PASSWORD are set but TAXI_MLOPS_STATE_DB_URL is "
                    "not: the credentials need the database's URL"
                )
            return None
        url = self.state_db_url.get_secret_value()
        if self.state_db_user is None and self.state_db_password is None:
            return url
        from shared.statedb.database import with_credentials

        password = self.state_db_password.get_secret_value() if self.state_db_password else None
        return with_credentials(url, self.state_db_user, password)

    @cached_property
    def download_cache_dir(self) -> Path:
        return self.home / "data" / "tlc"

    @cached_property
    def generated_data_dir(self) -> Path:
        return self.home / "data" / "generated"

    @cached_property
    def native_trees_dir(self) -> Path | None:
        """Where the services keep the native libraries built from tree models (None: off)."""
        return self.home / "native-trees" if self.native_trees else None

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"

    @cached_property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @cached_property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @cached_property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def tracking_uri(self) -> str:
        """The configured MLflow tracking URI, or the embedded SQLite store under ``home``."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def embedded_mlflow(self) -> bool:
        """True for a local store (the default SQLite file, or any sqlite:/file: URI): then
        artifacts go under ``home`` too. Only a tracking *server* chooses its own artifact
        store (otherwise MLflow would write them to ./mlruns in the working directory)."""
        return not self.tracking_uri.startswith(("http://", "https://", "databricks"))

    @cached_property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @cached_property
    def stack_dir(self) -> Path:
        """Data, logs and configuration of the scale-out stack (`taxi-mlops stack`)."""
        return self.home / "stack"

    @cached_property
    def run_dir(self) -> Path:
        """PID files, sockets and per-process scratch (e.g. Prometheus multiprocess files)."""
        return self.home / "run"


DEV_ADMIN_TOKEN = "dev-token"  # noqa: S105 - a documented dev default, refused in prod
DEV_FEEDBACK_TOKEN = "dev-feedback-token"  # noqa: S105 - likewise
#: a production token is a random secret: `openssl rand -hex 32` gives 64 characters
MIN_PROD_TOKEN_CHARS = 32


def _token(settings: Settings, field: str, dev_default: str) -> str:
    """A bearer token to enforce. Outside dev it must be set, not the dev default, and long
    enough to be a secret; anywhere, whitespace (which no Authorization header can carry
    intact) is refused rather than left to never match."""
    value = getattr(settings, field).get_secret_value()
    variable = env_var(field)
    if value != value.strip() or any(c.isspace() for c in value):
        raise ConfigError(f"{variable}: contains whitespace, which no bearer token can carry")
    if settings.env == "dev":
        return str(value or dev_default)
    if not value or value == dev_default or len(value) < MIN_PROD_TOKEN_CHARS:
        raise ConfigError(
            f"{variable} must be set to a secret of at least {MIN_PROD_TOKEN_CHARS} characters "
            f"(not empty, not the dev default) when TAXI_MLOPS_ENV={settings.env}"
        )
    return str(value)


def admin_token(settings: Settings) -> str:
    """The admin token to enforce; a missing, default or short one is an error outside dev."""
    return _token(settings, "admin_token", DEV_ADMIN_TOKEN)


def feedback_token(settings: Settings) -> str:
    """The token that may post labels; the same rules as the admin token."""
    return _token(settings, "feedback_token", DEV_FEEDBACK_TOKEN)


def env_var(field_name: str) -> str:
    """The environment variable a settings field is read from (its first alias, if any)."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"TAXI_MLOPS_{field_name.upper()}"


def describe_error(exc: ValidationError) -> str:
    """One line per bad variable, named as the user set it: no pydantic internals."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = env_var(field) if field in Settings.model_fields else field
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {message} (got {error.get('input')!r})")
    return "; ".join(problems)


def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_error(exc)) from None
