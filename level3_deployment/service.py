"""Wiring: build the level-3 app from settings (in each worker: level3_deployment/cli.py)."""

from __future__ import annotations

import getpass
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow.sklearn
from flask import Flask
from mlflow import MlflowClient

from level2_training import registry
from level3_deployment import state as st
from level3_deployment.app import AliasHooks, create_app
from level3_deployment.prediction_log import PredictionLog
from level3_deployment.routing import Variant
from level3_deployment.slots import SlotManager, UnknownVersion
from shared.errors import ConfigError, TaxiMlopsError
from shared.settings import Settings, admin_token, feedback_token
from shared.statedb import state_locations
from shared.statedb.database import StateUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pin:
    version: int
    variant: Variant


def ensure_started(
    store: st.StateStore, client: MlflowClient, model_name: str
) -> st.DeploymentState:
    """A first start serves the registry's champion as blue."""
    current = store.current()
    if current.blue is not None:
        return current
    champion = registry.alias_version(client, model_name, registry.CHAMPION)
    if champion is None:
        raise ConfigError(no_champion(model_name))
    try:
        return store.write(
            st.start(current, champion, f"serve the champion v{champion}", getpass.getuser()),
            current.generation,
        )
    except st.ConflictError:  # another replica on this database started it first
        return store.current()


def ensure_pinned(store: st.StateStore, version: int) -> st.DeploymentState:
    """A pinned service serves exactly ``version`` as blue, whatever its store held before."""
    current = store.current()
    if current.blue == version and current.green is None:
        return current
    try:
        return store.write(
            st.start(current, version, f"pinned to v{version}", getpass.getuser()),
            current.generation,
        )
    except st.ConflictError:  # another replica on this database pinned it first
        return store.current()


def no_champion(name: str) -> str:
    return f"no champion for {name} in the registry: run `taxi-mlops level2 train` first"


def registry_problem(client: MlflowClient, name: str, version: int | None) -> str | None:
    """Why the service cannot start on this registry (None: it can): no champion, no
    ``version`` to pin, or a registry it cannot read (the tracking store the environment
    names: an unreachable server is not an empty registry)."""
    try:
        if version is not None:
            if registry.has_version(client, name, version):
                return None
            return f"--pin-version: {name} has no version {version} in the registry"
        if registry.alias_version(client, name, registry.CHAMPION) is None:
            return no_champion(name)
    except registry.RegistryUnavailableError as exc:
        return str(exc)
    return None


def start_problem(name: str, version: int | None, deployment: str) -> str | None:
    """Why the service cannot start (:func:`registry_problem`, or a state database it cannot
    reach), else None once its first start is recorded: the champion as blue, or ``version``
    pinned. Run by the master before gunicorn forks (in a child of its own: MLflow's
    connections must not cross fork), so that a worker's boot never writes the state."""
    client = MlflowClient()
    problem = registry_problem(client, name, version)
    if problem is not None:
        return problem
    store = st.StateStore(deployment, migrate=False)
    try:
        if version is None:
            ensure_started(store, client, name)
        else:
            ensure_pinned(store, version)
    except TaxiMlopsError as exc:  # the registry or the database, gone since the check
        return str(exc)
    finally:
        store.db.dispose()
    return None


def import_worker_libraries(*, mlflow_database: bool) -> None:
    """Import, in gunicorn's master before it forks, the libraries every worker's
    :func:`build_app` loads: MLflow's database stores (``mlflow_database``: the tracking URI is
    a database, not a server), skops (which a model load imports, and which imports most of
    scikit-learn) and Treelite with TL2cgen (the compiled predictors). Modules only, no
    connection. Each worker then starts with them in memory shared with the master, where it
    imported them itself (~2 s of CPU a worker, and a replacement worker's boot, here)."""
    modules = ["skops.io", "tl2cgen", "treelite.gtil", "treelite.sklearn"]
    if mlflow_database:
        modules += [
            "mlflow.store.tracking.sqlalchemy_store",
            "mlflow.store.model_registry.sqlalchemy_store",
        ]
    for module in modules:
        importlib.import_module(module)


def read_first_state(slots: SlotManager) -> None:
    """A worker's first read of the deployment state (and load of its models). gunicorn stops
    the whole service when a worker fails to boot, so a worker that boots while the database
    is down (gunicorn replaced one that died) boots without the state: it answers 503 until
    its poller reads the state, as every worker answers 503 while the database is down."""
    try:
        slots.refresh()
    except StateUnavailable as exc:
        logger.warning("booting without the deployment state (%s); the poller will read it", exc)


def registry_loader(client: MlflowClient, name: str) -> Callable[[int], Any]:
    """Load a registry version's pipeline; a version the registry lacks is
    :class:`UnknownVersion` (a 404 for a deploy), not a load failure."""

    def load(version: int) -> Any:
        if not registry.has_version(client, name, version):
            raise UnknownVersion(f"{name} has no version {version} in the registry")
        return mlflow.sklearn.load_model(f"models:/{name}/{version}")

    return load


def build_app(
    settings: Settings, pin: Pin | None = None, workers: int = 1, server_pid: int | None = None
) -> Flask:
    """``pin``: serve one registry version under a fixed variant name (a blue or green service
    behind a load balancer that does the split) instead of the champion plus a deployed green.
    ``workers``: how many gunicorn workers run this app; ``server_pid``: their master."""
    token = admin_token(settings)
    where = state_locations(settings.home, settings.state_url)
    # The master migrated the tables and recorded the first start (start_problem): a worker
    # needs the database only to read the state, so it can boot while the database is down.
    store = st.StateStore(where.deployment, migrate=False)
    client = MlflowClient()
    name = settings.registered_model_name
    slots = SlotManager(
        store,
        registry_loader(client, name),
        compile_models=settings.serving_engine == "compiled",
        native_dir=settings.native_trees_dir,
    )
    read_first_state(slots)

    def champion(version: int, reason: str) -> None:
        # a promotion and a rollback both move the champion alias (the reason tells them apart)
        registry.move_alias(
            client, name, registry.CHAMPION, version, reason=reason, actor="level3 admin API"
        )

    def deployed(version: int, reason: str) -> None:
        registry.move_alias(
            client, name, registry.CHALLENGER, version, reason=reason, actor="level3 admin API"
        )

    def split(reason: str) -> None:
        registry.keep_alias(
            client,
            name,
            registry.CHALLENGER,
            reason=reason,
            actor="level3 admin API",
            action="split",
        )

    hooks = AliasHooks(champion, champion, deployed, split)
    return create_app(
        slots,
        PredictionLog(where.predictions, journal=settings.prediction_journal, migrate=False),
        store,
        token=token,
        feedback_token=feedback_token(settings),
        aliases=hooks,
        pinned_as=None if pin is None else pin.variant,
        workers=workers,
        server_pid=server_pid,
    )
