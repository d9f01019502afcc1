"""``taxi-mlops level3``: serve blue/green from the registry; deploy, split, promote, roll back."""

from __future__ import annotations

import os
from typing import Any

import click

from level1_devops.cli import threads_option
from level3_deployment.client import AdminClient, AdminError
from shared.cli_output import emit, fail, json_option
from shared.settings import admin_token, feedback_token, get_settings


@click.group()
def level3() -> None:
    """Level 3 - automated deployment: blue/green with an A/B split."""


@level3.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8100, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@threads_option
@click.option(
    "--pin-version",
    type=click.IntRange(min=1),
    default=None,
    help="Serve only this registry version and refuse deployment changes: one of the blue and "
    "green services behind a load balancer that splits the traffic (infra/envs/aws).",
)
@click.option(
    "--pin-variant",
    type=click.Choice(["blue", "green"]),
    default="blue",
    show_default=True,
    help="With --pin-version: the variant name this service answers and logs under.",
)
@json_option
def serve(
    host: str, port: int, workers: int, threads: int, pin_version: int | None, pin_variant: str
) -> None:
    """Serve the registry's champion (blue) and any deployed green under gunicorn."""
    from level2_training import runtime
    from shared.gunicorn_runner import run, service_options

    settings = get_settings()
    admin_token(settings)  # refuse to start without real tokens outside dev
    feedback_token(settings)
    runtime.configure(settings)
    options = service_options(
        "level3",
        settings.run_dir,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        # Each worker builds its own app: MLflow's SQLAlchemy connections must not cross fork().
        preload=False,
    )

    # Migrate both stores here, before gunicorn forks: workers would otherwise all queue on the
    # migration lock at once (and, on a new SQLite file, race to switch it to WAL); and a
    # worker that boots later, maybe while the database is down, then needs it for nothing
    # but reading the state (level3_deployment/service.py).
    from level3_deployment.prediction_log import PredictionLog
    from level3_deployment.routing import Variant
    from level3_deployment.service import Pin, import_worker_libraries  # and MLflow
    from level3_deployment.state import StateStore
    from shared.statedb import state_locations

    import_worker_libraries(mlflow_database=settings.embedded_mlflow)
    where = state_locations(settings.home, settings.state_url)
    StateStore(where.deployment).db.dispose()
    PredictionLog(where.predictions).close()
    _first_start(settings.registered_model_name, pin_version, where.deployment)
    pin = None if pin_version is None else Pin(pin_version, Variant(pin_variant))

    master = os.getpid()  # this process becomes gunicorn's master; the workers fork from it

    def factory() -> Any:
        from level3_deployment.service import build_app

        return build_app(settings, pin, workers, server_pid=master)

    emit(
        {"ok": True, "url": f"http://{host}:{port}", "pidfile": str(options.pidfile)},
        [f"serving on http://{host}:{port} ({workers} gunicorn workers, {threads} threads each)"],
    )
    run(factory, options)


def _first_start(model_name: str, version: int | None, deployment: str) -> None:
    """Refuse to start without a champion (or the pinned version), with a clear message;
    else record the first start (the champion as blue, or the pinned version).

    Runs in a child forked from the master: the master has imported MLflow already, so the
    check costs no interpreter start, and MLflow's connections (and, on an empty SQLite store,
    the schema it creates, once, before workers could race to create it) stay out of the
    process the workers fork from."""
    from level3_deployment.service import start_problem
    from shared.forked import ForkedError, call_in_fork

    try:
        problem = call_in_fork(start_problem, model_name, version, deployment)
    except ForkedError as exc:
        fail(f"cannot start the service: {exc}")
    if problem is not None:
        fail(problem)


def _admin(url: str) -> AdminClient:
    """The admin client for ``url`` (its errors end the command with a clean message)."""
    return AdminClient.of(url, get_settings(), timeout_s=60)


def _settings_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    return (value or get_settings().level3_url).rstrip("/")


def url_option(func: Any) -> Any:
    """``--url``: the level-3 service; by default TAXI_MLOPS_LEVEL3_URL (http://127.0.0.1:8100)."""
    return click.option(
        "--url",
        default=None,
        callback=_settings_url,
        help="The level-3 service [default: TAXI_MLOPS_LEVEL3_URL, else http://127.0.0.1:8100].",
    )(func)


def wait_option(func: Any) -> Any:
    """``--wait/--no-wait`` and ``--wait-timeout`` for the commands that change the deployment."""
    func = click.option(
        "--wait-timeout",
        type=click.FloatRange(min=0.1),
        default=60.0,
        show_default=True,
        help="Seconds to wait for every worker before giving up (the change stays stored).",
    )(func)
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help="Return once every worker serves the change (TAXI_MLOPS_LEVEL3_WORKERS says how "
        "many there are behind a load balancer); --no-wait: once it is stored and the worker "
        "that took the call serves it, the others within a poll (0.5 s).",
    )(func)


def _changed(admin: AdminClient, state: dict[str, Any], wait: bool, timeout_s: float) -> None:
    """Report a change the service has stored, once every worker serves it (``wait``): a
    smoke test or a caller's next step then sees it on whichever worker answers."""
    if wait:
        try:
            admin.settle(timeout_s, state)
        except AdminError as exc:
            raise AdminError(
                f"generation {state['generation']} is stored, but not yet served everywhere: {exc}"
            ) from None
    lines = _state_lines(state)
    if state.get("registry_error"):
        lines.append(
            f"warning: the registry's history did not record it: {state['registry_error']}"
        )
    emit({"ok": True, "state": state, "served_everywhere": wait}, lines)


def _state_lines(state: dict) -> list[str]:
    green = (
        f"v{state['green']} at {state['green_percent']:g}% ({state['mode']})"
        if state["green"]
        else "none"
    )
    return [
        f"generation {state['generation']}: blue v{state['blue']}, green {green}",
        f"  ({state['reason']})",
    ]


@level3.command()
@click.option("--version", "version", type=click.IntRange(min=1), required=True)
@click.option("--share", type=click.FloatRange(0, 100), default=10.0, show_default=True)
@click.option("--mode", type=click.Choice(["ab", "shadow"]), default="ab", show_default=True)
@click.option("--reason", default=None)
@url_option
@wait_option
@json_option
def deploy(
    version: int,
    share: float,
    mode: str,
    reason: str | None,
    url: str,
    wait: bool,
    wait_timeout: float,
) -> None:
    """Load a registry version into green (warm-up, health check), then route SHARE % to it."""
    admin = _admin(url)
    _changed(admin, admin.deploy(version, share, mode, reason), wait, wait_timeout)


@level3.command("set-split")
@click.option("--share", type=click.FloatRange(0, 100), required=True)
@click.option("--mode", type=click.Choice(["ab", "shadow", "off"]), default="ab", show_default=True)
@url_option
@wait_option
@json_option
def set_split(share: float, mode: str, url: str, wait: bool, wait_timeout: float) -> None:
    """Change green's share of traffic (sticky and monotone per ride id)."""
    admin = _admin(url)
    _changed(admin, admin.set_split(share, mode), wait, wait_timeout)


@level3.command()
@click.option("--reason", default=None)
@url_option
@wait_option
@json_option
def promote(reason: str | None, url: str, wait: bool, wait_timeout: float) -> None:
    """Green becomes blue for every worker at once; the champion alias moves."""
    admin = _admin(url)
    _changed(admin, admin.promote(reason), wait, wait_timeout)


@level3.command()
@click.option("--reason", default=None)
@url_option
@wait_option
@json_option
def rollback(reason: str | None, url: str, wait: bool, wait_timeout: float) -> None:
    """Green gets no traffic; right after a promotion, the previous blue comes back."""
    admin = _admin(url)
    _changed(admin, admin.rollback(reason), wait, wait_timeout)


@level3.command()
@url_option
@json_option
def status(url: str) -> None:
    """The deployment state and its recent history."""
    answer = _admin(url).status()
    emit({"ok": True, **answer}, _state_lines(answer["state"]))


@level3.command("ab-report")
@click.option("--min-samples", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--test",
    type=click.Choice(["welch", "sequential"]),
    default="welch",
    show_default=True,
    help="welch: a fixed-horizon test, valid if read once; sequential: a confidence sequence, "
    "valid however often it is read (paired in shadow mode).",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 0.99),
    default=0.0,
    show_default=True,
    help="sequential: green is better when its MSE is shown below blue's x (1 + margin).",
)
@url_option
@json_option
def ab_report(min_samples: int, test: str, margin: float, url: str) -> None:
    """Per-variant RMSE and MAE with 95 % intervals, a test on the difference, and a verdict."""
    from level3_deployment.sequential import TUNED_FOR

    sequential = (margin, TUNED_FOR) if test == "sequential" else None
    report = _admin(url).ab_report(min_samples, sequential=sequential)
    lines = [
        f"{variant}: n={q['n']} RMSE {q['rmse']:.3f} [{q['rmse_ci'][0]:.3f}, {q['rmse_ci'][1]:.3f}]"
        f" MAE {q['mae']:.3f} [{q['mae_ci'][0]:.3f}, {q['mae_ci'][1]:.3f}]"
        for variant, q in report["variants"].items()
    ]
    lines.append(f"verdict: {report['verdict'] or 'none yet'} ({report['reason']})")
    emit({"ok": True, **report}, lines)


@level3.command()
@click.option("--rides", type=click.IntRange(1, 1000), default=50, show_default=True)
@url_option
@json_option
def smoke(rides: int, url: str) -> None:
    """Send RIDES sample rides (ids spread over both variants); fail unless every one gets a
    200 with a plausible duration and the service reports healthy."""
    from shared.services import http_json

    failures: list[str] = []
    variants: dict[str, int] = {}
    for i in range(rides):
        ride = {
            "ride_id": f"smoke-{i}",
            "PULocationID": 161,
            "DOLocationID": 236,
            "trip_distance": 1.0 + i % 10,
        }
        try:
            status, answer = http_json("POST", f"{url}/predict", ride, timeout=30)
        except OSError as exc:
            fail(f"{url}: cannot reach the level-3 service ({exc})")
        if status != 200 or not 0 < answer.get("duration", -1) < 24 * 60:
            failures.append(f"ride {i}: HTTP {status}: {answer}")
        else:
            variants[answer["variant"]] = variants.get(answer["variant"], 0) + 1
    status, health = http_json("GET", f"{url}/health", timeout=30)
    if status != 200:
        failures.append(f"/health: HTTP {status}: {health}")
    if failures:
        fail(f"smoke test failed: {len(failures)} problem(s); first: {failures[0]}")
    emit(
        {"ok": True, "rides": rides, "variants": variants, "health": health},
        [f"{rides} rides answered {variants}; health {health['status']}"],
    )
