"""The training flow as a Prefect deployment on a process work pool, and runs submitted to it.

The deployment's entrypoint is the installed module (``level2_training.flow.training_flow``),
not a file pulled from storage: a worker runs the code installed beside it (this package, or
the platform image), so nothing is uploaded. A submitted run's result comes back through
MLflow (the flow logs it as ``flow_result.json`` on its parent run), not through Prefect's
result storage, which is local to the worker's machine.

Import this module only after :func:`level2_training.runtime.configure`.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import mlflow
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType
from prefect.exceptions import ObjectNotFound

from level2_training.flow import FLOW_NAME, RESULT_ARTIFACT, TrainingConfig, training_flow
from shared.errors import ConfigError, TaxiMlopsError

logger = logging.getLogger(__name__)

DEFAULT_POOL = "taxi-training"
DEFAULT_DEPLOYMENT = "train"


class FlowRunError(TaxiMlopsError):
    """A submitted flow run ended in another state than Completed."""


def ensure_pool(name: str) -> bool:
    """Create the process work pool ``name`` unless it exists; True if it was created."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def register(pool: str = DEFAULT_POOL, name: str = DEFAULT_DEPLOYMENT) -> str:
    """Create or update the training deployment on ``pool``; returns its id."""
    ensure_pool(pool)
    deployment_id = training_flow.deploy(
        name=name,
        work_pool_name=pool,
        entrypoint_type=EntrypointType.MODULE_PATH,
        build=False,
        push=False,
        ignore_warnings=True,  # a process pool runs what is installed: that is the point
        print_next_steps=False,
        description="taxi-mlops level-2 training: load, validate, featurize, train, evaluate, "
        "register (submitted by `taxi-mlops level2 train --on-worker`)",
    )
    return str(deployment_id)


def submit(
    config: TrainingConfig, name: str = DEFAULT_DEPLOYMENT, timeout_s: float = 3600
) -> FlowRun:
    """Run the training deployment on a worker and wait for its end; returns the flow run."""
    full_name = f"{FLOW_NAME}/{name}"
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            raise ConfigError(
                f"no deployment {full_name} on the Prefect server: run `taxi-mlops level2 "
                "deploy-flow` (`taxi-mlops stack up` does) and start a worker on its pool"
            ) from None
    # called from sync code, Prefect's sync_compatible run_deployment returns the run itself
    flow_run = cast(
        FlowRun,
        run_deployment(
            full_name,
            parameters={"config": config.model_dump(mode="json")},
            timeout=timeout_s,
        ),
    )
    state = flow_run.state
    if state is None or not state.is_completed():
        name_ = state.name if state else "unknown"
        raise FlowRunError(
            f"flow run {flow_run.name} ({flow_run.id}) ended {name_}: "
            f"{(state.message if state else '') or 'see the worker log'}"
        )
    return flow_run


def result_of(flow_run_id: str, experiment: str) -> dict[str, Any]:
    """The result dict a flow run logged to its MLflow parent run."""
    client = MlflowClient()
    found = client.search_experiments(filter_string=f"name = '{experiment}'")
    if not found:
        raise FlowRunError(f"experiment {experiment!r} not found on {mlflow.get_tracking_uri()}")
    runs = client.search_runs(
        [found[0].experiment_id],
        filter_string=f"tags.flow_run_id = '{flow_run_id}'",
        max_results=1,
    )
    if not runs:
        raise FlowRunError(f"flow run {flow_run_id} left no MLflow run in {experiment!r}")
    return mlflow.artifacts.load_dict(f"runs:/{runs[0].info.run_id}/{RESULT_ARTIFACT}")
