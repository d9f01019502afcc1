"""The replay simulator: months of trips through the live level-3 service, on a simulated clock.

For each month after the first: (optionally) inject drift, stream the rides to ``/predict``
with their pickup times (the simulated clock: the prediction log and the monitoring windows
follow event time), post the actual durations to ``/feedback``, then run the level-4
monitoring flow on that month's window. The first month trains the initial champion (level-2
flow) and the static level-1 model that nobody retrains.

The replay's home is its own folder (registry, prediction log, decisions, reports), so it
never touches the user's models. It is deterministic: the same months, injections and seed give
the same decision log (wall-clock fields aside).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from level3_deployment.client import AdminClient
from level4_automation.loop import write_training_files
from level4_automation.policy import Policy
from level4_automation.replay_inject import (
    Injection,
    ReplayConfig,
    durations,
    inject,
    load_trips,
    ride_payloads,
    rmse,
    valid_mask,
    window_edges,
    window_of,
)
from level4_automation.replay_report import (
    ReplayRow,
    after_shift,
    deterministic,
    headline,
    markdown_table,
    window_text,
    write_plot,
)
from level4_automation.replay_traffic import send_feedback, stream
from level4_automation.store import Decision
from shared.data.schema import DROPOFF, PICKUP
from shared.data.validate import ValidationBounds, clean_trips
from shared.errors import ConfigError
from shared.services import free_port, http_json, start_service
from shared.settings import Settings, feedback_token
from shared.statedb import state_locations

__all__ = ["Injection", "ReplayConfig", "run_replay"]

logger = logging.getLogger(__name__)


@dataclass
class _Run:
    """What every month of a replay uses."""

    config: ReplayConfig
    settings: Settings
    policy: Policy
    bounds: ValidationBounds
    work: Path
    frames: dict[str, pd.DataFrame]
    say: Any
    static_l1: Any = None
    static_champion: Any = None
    #: the initial champion's family and settings, which the oracle retrains every month
    champion_family: str = ""
    champion_params: dict[str, Any] = field(default_factory=dict)
    #: the policy the replay's loop runs: the given one, its window counts scaled to the windows
    #: per month (policy.windows_scaled)
    policy_file: Path = Path()
    #: the previous month as the service saw it (drift injected), the oracle's training data
    previous: pd.DataFrame = field(default_factory=pd.DataFrame)
    url: str = ""


def run_replay(config: ReplayConfig, settings: Settings, progress: Any = None) -> dict[str, Any]:
    """Run the whole replay; ``progress(line)`` gets a line per month. ``settings`` are the
    replay's world: their home is ``config.out_dir``, with the runtime configured for it (the
    CLI does both)."""
    from level4_automation.policy import load_policy, policy_yaml, windows_scaled

    say = progress or (lambda line: None)
    started = time.perf_counter()
    if settings.home.resolve() != config.out_dir.resolve():
        raise ConfigError("run_replay: TAXI_MLOPS_HOME must be the replay folder")
    work = config.out_dir / "replay"
    work.mkdir(parents=True, exist_ok=True)
    frames = {m: load_trips(config, m, i) for i, m in enumerate(config.months)}
    say(f"loaded {len(frames)} months from {config.data_dir}")
    policy = windows_scaled(load_policy(config.policy_path), config.windows_per_month)
    run = _Run(config, settings, policy, ValidationBounds(), work, frames, say)
    run.policy_file = config.out_dir / "policy.yaml"
    run.policy_file.write_text(policy_yaml(policy))
    initial = _first_models(run)
    port = free_port()
    run.url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "taxi_mlops", "level3", "serve", "--port", str(port)]
    command += ["--workers", str(config.workers)]
    log = settings.logs_dir / f"replay-level3-{port}.log"
    with start_service(command, run.url, log, timeout_s=120):
        table = [
            _replay_month(run, index, month)
            for index, month in enumerate(config.months[1:], start=1)
        ]
    return _outputs(run, initial, table, time.perf_counter() - started)


def _first_models(run: _Run) -> dict[str, Any]:
    """The initial champion (level 2) and the static level-1 model, both from the first
    month; the champion is registered, the two static models kept for comparison."""
    import mlflow.sklearn

    from level4_automation.flow import retrainer
    from shared.features import BASELINE, build_pipeline, split_xy

    first = run.config.months[0]
    request = write_training_files(
        [run.frames[first]], run.work / "initial", run.policy.retrain.holdout_share
    )
    initial = retrainer(
        run.settings,
        run.policy,
        auto_champion=True,
        actor="taxi-mlops level4 replay (initial champion)",
    )(request)
    version = initial.registered.version
    run.say(
        f"initial champion v{version} ({initial.best.family}) trained on {first}: "
        f"holdout RMSE {initial.best.val_rmse:.3f}"
    )
    clean_first, _ = clean_trips(run.frames[first], run.bounds, month=first, source=first)
    run.static_l1 = build_pipeline(BASELINE).fit(*split_xy(clean_first, BASELINE))
    run.static_champion = mlflow.sklearn.load_model(
        f"models:/{run.settings.registered_model_name}/{version}"
    )
    run.champion_family, run.champion_params = initial.best.family, dict(initial.best.params)
    run.previous = run.frames[first]
    return {"version": version, **asdict(initial.best)}


def _replay_month(run: _Run, index: int, month: str) -> ReplayRow:
    """One month: its rides through the service window by window, each window's labels and
    monitoring cycle; the row."""
    config, url = run.config, run.url
    for injection in config.injections:
        if injection.month == month and injection.kind == "bad-candidate":
            admin = _admin(run)
            _deploy_bad_candidate(run.frames[config.months[index - 1]], run, admin)
            admin.settle()
    frame = inject(run.frames[month], month, config.injections, config.seed + index)
    actual = durations(frame)
    served = _serve_month(run, month, frame, actual)
    valid = valid_mask(frame, month, run.bounds)
    clean, truth = frame[valid], actual[valid]
    oracle = _oracle(run, run.previous, config.months[index - 1])
    run.previous = frame
    _, state = http_json("GET", f"{url}/health")
    versions = zip(*np.unique(served.versions[valid], return_counts=True), strict=True)
    shown = headline(served.decisions)
    row = ReplayRow(
        month=month,
        rides=len(frame),
        refused_rides=served.refused,
        refused_labels=served.refused_labels,
        valid_rides=int(valid.sum()),
        rmse_static_level1=rmse(run.static_l1.predict(clean), truth),
        rmse_static_champion=rmse(run.static_champion.predict(clean), truth),
        rmse_automated=rmse(served.predicted[valid], truth),
        rmse_oracle=rmse(oracle.predict(clean), truth),
        served_by={str(v): int(n) for v, n in versions},
        action=shown.action,
        rule=shown.rule,
        reason=shown.reason,
        blue_after=state["blue"],
        green_after=state["green"],
        window_actions=[d.action for d in served.decisions],
    )
    run.say(
        f"{month}: {len(frame)} rides ({served.refused} refused), RMSE static L1 "
        f"{_f(row.rmse_static_level1)}, static champion {_f(row.rmse_static_champion)}, "
        f"automated {_f(row.rmse_automated)}, oracle {_f(row.rmse_oracle)} -> "
        f"{shown.action} ({shown.rule}){window_text(row)}"
    )
    return row


@dataclass
class _Served:
    """A month's traffic through the service: answers and versions per ride, what was
    refused, and each window's decision."""

    predicted: np.ndarray
    versions: np.ndarray
    refused: int = 0
    refused_labels: int = 0
    decisions: list[Decision] = field(default_factory=list)


def _serve_month(run: _Run, month: str, frame: pd.DataFrame, actual: np.ndarray) -> _Served:
    """Each window of the month in turn: its rides to /predict, their labels to /feedback, then
    a monitoring cycle on the window (the loop decides as often as labels arrive)."""
    from level4_automation.flow import monitoring_flow

    url, rides = run.url, ride_payloads(frame, month)
    edges = window_edges(month, run.config.windows_per_month)
    which = window_of(frame[PICKUP], edges)
    served = _Served(np.full(len(frame), np.nan), np.zeros(len(frame), dtype=np.int64))
    for k in range(len(edges) - 1):
        index = np.flatnonzero(which == k)
        part = [rides[i] for i in index]
        predicted, versions, refused = stream(url, part)
        served.predicted[index], served.versions[index] = predicted, versions
        token = feedback_token(run.settings)
        labels = send_feedback(url, part, predicted, actual[index], token)
        served.refused += refused
        served.refused_labels += labels["refused"]
        cycle = monitoring_flow(
            start=edges[k], end=edges[k + 1], policy_path=str(run.policy_file), level3_url=url
        )
        served.decisions.append(cycle.decision)
        _admin(run).settle()
    return served


def _admin(run: _Run) -> AdminClient:
    """The admin client of the replay's service (all its workers, behind a balancer too)."""
    return AdminClient.of(run.url, run.settings)


def _oracle(run: _Run, previous: pd.DataFrame, previous_month: str) -> Any:
    """The champion's family and settings, fitted on the whole previous month as served
    (cleaned by the same validation as training): what retraining every month would serve."""
    from shared.features import split_xy
    from shared.models import fit_model, get_family

    clean, _ = clean_trips(previous, run.bounds, month=previous_month, source=previous_month)
    spec = get_family(run.champion_family).spec
    X, y = split_xy(clean, spec)
    return fit_model(run.champion_family, run.champion_params, run.policy.retrain.seed, X, y)


def _outputs(
    run: _Run, initial: dict[str, Any], table: list[ReplayRow], seconds: float
) -> dict[str, Any]:
    """The replay's files (decision log, table, plot) and its result."""
    from level4_automation.store import MonitoringStore

    config = run.config
    where = state_locations(run.settings.home, run.settings.state_url)
    decisions = MonitoringStore(where.loop).decisions()
    (config.out_dir / "decisions.json").write_text(json.dumps(decisions, indent=2) + "\n")
    rows = [asdict(row) for row in table]
    (config.out_dir / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    (config.out_dir / "table.md").write_text(markdown_table(table))
    plot = config.out_dir / "rmse.png"
    write_plot(table, config.injections, plot)
    retrain_actions = ("canary_deployed", "gate_failed", "retrain_blocked")
    increase = run.policy.quality.max_rmse_increase
    shifted = after_shift(table, config.injections, increase)
    return {
        "out_dir": str(config.out_dir),
        "months": config.months,
        "injections": [asdict(i) for i in config.injections],
        "initial_champion": initial,
        "table": rows,
        "promotions": sum(r.window_actions.count("promote") for r in table),
        "rollbacks": sum(r.window_actions.count("rollback") for r in table),
        "retrains": sum(sum(a in retrain_actions for a in r.window_actions) for r in table),
        "windows_per_month": config.windows_per_month,
        "after_shift": None if shifted is None else asdict(shifted),
        "decisions": deterministic(decisions),
        "files": {
            "plot": str(plot),
            "table": str(config.out_dir / "table.md"),
            "decisions": str(config.out_dir / "decisions.json"),
            "reports": str(config.out_dir / "level4" / "reports"),
        },
        "seconds": round(seconds, 1),
    }


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _deploy_bad_candidate(previous: pd.DataFrame, run: _Run, admin: AdminClient) -> None:
    """Register a model trained on shuffled durations and put it in green as a canary, as a
    careless human might: the A/B rule must roll it back."""
    from level4_automation.flow import retrainer

    config, policy, work, say, settings = run.config, run.policy, run.work, run.say, run.settings
    rng = np.random.default_rng(config.seed)
    shuffled = previous.copy()
    minutes = (shuffled[DROPOFF] - shuffled[PICKUP]).to_numpy()
    shuffled[DROPOFF] = shuffled[PICKUP] + rng.permutation(minutes)
    request = write_training_files([shuffled], work / "bad-candidate", 0.2)
    one_quick_model = policy.retrain.model_copy(
        update={"families": ["hgb"], "trials": 1, "seed": config.seed}
    )
    result = retrainer(
        settings,
        policy.model_copy(update={"retrain": one_quick_model}),
        actor="taxi-mlops level4 replay (deliberately bad candidate)",
    )(request)
    version = result.registered.version
    admin.deploy(
        version,
        policy.canary.share,
        "ab",
        "replay: a deliberately bad candidate (trained on shuffled durations)",
    )
    say(f"deployed a deliberately bad candidate v{version} to green at {policy.canary.share:g}%")
