"""One cycle of the closed loop: observe a window, decide, act, and write it all down.

Everything the cycle touches comes in through :class:`LoopContext` (the prediction log, the
level-3 admin API, the champion's reference data, the retraining entry point, the alerter),
so the Prefect flow, the replay simulator and the tests wire the same code.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from level2_training.results import TrainingResult
from level3_deployment.prediction_log import PredictionLog
from level4_automation import controller as ctl
from level4_automation.alerts import Alerter
from level4_automation.level3_client import DeploymentError, Level3Client
from level4_automation.monitor import WindowMetrics, monitor_window, trips_frame
from level4_automation.policy import Policy
from level4_automation.store import Decision, LoopState, MonitoringStore
from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU, to_tlc
from shared.data.validate import ValidationBounds
from shared.errors import DataQualityError, TaxiMlopsError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainRequest:
    """Labelled traffic exported as trip files: older windows and most of the newest to train
    on, the newest rides held out to compare candidate and champion."""

    train_files: list[Path]
    val_file: Path
    rows: dict[str, int]
    #: the version the candidate must beat: the blue the level-3 service serves (not the
    #: registry's champion alias, which can differ)
    incumbent_version: int | None = None


#: (version) -> (reference frame, the version's validation RMSE)
ReferenceSource = Callable[[int], tuple[pd.DataFrame, float | None]]
#: runs the level-2 flow; returns its result (registered version, best and champion RMSE)
Retrainer = Callable[[RetrainRequest], TrainingResult]


@dataclass(frozen=True)
class LoopContext:
    policy: Policy
    log: PredictionLog
    store: MonitoringStore
    level3: Level3Client
    alerter: Alerter
    references: ReferenceSource
    retrain: Retrainer
    work_dir: Path
    bounds: ValidationBounds = field(default_factory=ValidationBounds)
    #: how long a deployment change may take to reach every level-3 worker
    settle_timeout_s: float = 60.0


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "-", text).strip("-")


def observe(
    ctx: LoopContext, start: str, end: str
) -> tuple[WindowMetrics, ctl.Deployment, float | None]:
    deployment = ctx.level3.deployment()
    if deployment.blue is None:
        raise DeploymentError(
            "level 3 serves no model yet: start it with `taxi-mlops level3 serve`"
        )
    reference, reference_rmse = ctx.references(deployment.blue)
    metrics = monitor_window(
        ctx.log.window(start, end),
        reference,
        start=start,
        end=end,
        refused=ctx.log.rejected(start, end),
        drift=ctx.policy.drift,
        min_labels=ctx.policy.quality.min_labels,
        bounds=ctx.bounds,
        report_dir=ctx.work_dir / "reports" / _slug(start),
        seed=ctx.policy.retrain.seed,
    )
    ctx.store.save_window(metrics)
    return metrics, deployment, reference_rmse


def write_training_files(
    frames: list[pd.DataFrame], folder: Path, holdout_share: float
) -> RetrainRequest:
    """Trip frames (oldest first) as TLC files: everything but the newest ``holdout_share`` of
    the last frame to train on, that newest part held out to compare models on."""
    folder.mkdir(parents=True, exist_ok=True)
    ordered = [frame.sort_values(PICKUP, kind="stable") for frame in frames]
    newest = ordered[-1]
    cut = math.floor(len(newest) * (1 - holdout_share))
    parts = [*ordered[:-1], newest.iloc[:cut]]
    columns = [PICKUP, DROPOFF, PU, DO, DISTANCE]
    train_files = []
    for i, part in enumerate(parts):
        path = folder / f"train-{i}.parquet"
        to_tlc(part[columns]).to_parquet(path, index=False)
        train_files.append(path)
    val_file = folder / "holdout.parquet"
    to_tlc(newest.iloc[cut:][columns]).to_parquet(val_file, index=False)
    rows = {"train": int(sum(len(p) for p in parts)), "holdout": int(len(newest) - cut)}
    return RetrainRequest(train_files, val_file, rows)


def export_training_data(
    ctx: LoopContext, windows: list[WindowMetrics], folder: Path
) -> RetrainRequest:
    """Write the labelled rides of ``windows`` (oldest first) as trip files."""
    frames = []
    for window in windows:
        served = ctx.log.window(window.start, window.end)
        frames.append(trips_frame(served[served["shadow"] == 0]))
    return write_training_files(frames, folder, ctx.policy.retrain.holdout_share)


def _retrain_and_deploy(
    ctx: LoopContext, state: LoopState, window: WindowMetrics, served_blue: int | None
) -> tuple[str, str, str, dict[str, Any], LoopState]:
    policy = ctx.policy
    history = [w for w in ctx.store.windows() if w.start <= window.start]
    recent = history[-policy.retrain.windows :]
    exported = export_training_data(ctx, recent, ctx.work_dir / "retrain" / _slug(window.start))
    request = replace(exported, incumbent_version=served_blue)
    outcome: dict[str, Any] = {"training_rows": request.rows, "windows": [w.start for w in recent]}
    cooling = replace(state, cooldown_left=policy.trigger.cooldown_windows)
    try:
        result = ctx.retrain(request)
    except DataQualityError as exc:
        return "retrain_blocked", "data_quality", str(exc), outcome, cooling
    except TaxiMlopsError as exc:
        return "retrain_failed", "training_error", str(exc), outcome, cooling
    candidate, candidate_rmse = result.registered.version, result.best.val_rmse
    champion_rmse = result.registered.previous_champion.val_rmse
    outcome.update(
        {
            "candidate": candidate,
            "family": result.best.family,
            "candidate_rmse": round(candidate_rmse, 6),
            "champion": result.registered.previous_champion.version,
            "champion_rmse": None if champion_rmse is None else round(champion_rmse, 6),
        }
    )
    passed, why = ctl.gate(policy, candidate_rmse, champion_rmse)
    if not passed:
        return "gate_failed", "non_inferiority", why, outcome, cooling
    canary = policy.canary
    ctx.level3.deploy(
        candidate, canary.share, canary.mode, f"level 4 canary after {window.start}: {why}"
    )
    outcome["canary_share"] = canary.share
    _settle(ctx, outcome)
    new = replace(state, phase="canary", canary_version=candidate, canary_windows=0)
    return "canary_deployed", "gate_passed", why, outcome, new


def _settle(ctx: LoopContext, outcome: dict[str, Any]) -> None:
    """Wait until every level-3 worker serves the change just made (each applies it within a
    poll interval). One that has not within ``settle_timeout_s`` (it cannot load the version,
    say) is told in the decision and its alert, not raised: the change is made, and the
    decision must still be recorded."""
    try:
        ctx.level3.settle(ctx.settle_timeout_s)
    except DeploymentError as exc:
        logger.warning("the deployment change has not reached every worker: %s", exc)
        outcome["every_worker_applied"] = False
        outcome["not_applied"] = str(exc)
        return
    outcome["every_worker_applied"] = True


def _validation_rmse(ctx: LoopContext, version: int | None) -> float | None:
    """A version's validation RMSE from the registry; None when it has none (a model
    registered by hand without the level-2 flow's monitoring reference)."""
    if version is None:
        return None
    try:
        return ctx.references(version)[1]
    except TaxiMlopsError as exc:
        logger.warning("v%s: no validation RMSE to hold the canary to (%s)", version, exc)
        return None


def act(
    ctx: LoopContext,
    metrics: WindowMetrics,
    deployment: ctl.Deployment,
    reference_rmse: float | None,
) -> Decision:
    """Decide on one observed window, carry the decision out, and record it."""
    policy = ctx.policy
    state = ctx.store.state()
    outcome: dict[str, Any] = {}
    if state.phase == "watch" and deployment.green is not None and deployment.green_percent > 0:
        # A canary someone else deployed (a person, another tool) is judged like our own,
        # on the evidence already in this window.
        _, state = ctl.decide_watch(policy, state, metrics, reference_rmse, deployment)
        outcome["adopted_canary"] = deployment.green
    if state.phase == "canary":
        canary = policy.canary
        sequential = (canary.margin, canary.tuned_for_labels)
        ab = ctx.level3.ab_report(
            canary.min_samples,
            canary.confidence,
            sequential if canary.test == "sequential" else None,
        )
        canary_reference = None if deployment.green is None else ctx.references(deployment.green)[1]
        verdict, new_state = ctl.decide_canary(
            policy, state, metrics, ab, deployment, canary_reference
        )
        action, rule, reason = verdict.action, verdict.rule, verdict.reason
        if action == ctl.PROMOTE:
            ctx.level3.promote(f"level 4: {rule}: {reason}")
            outcome["champion"] = deployment.green
            _settle(ctx, outcome)
        elif action == ctl.ROLLBACK:
            ctx.level3.rollback(f"level 4: {rule}: {reason}")
            outcome["champion"] = deployment.blue
            _settle(ctx, outcome)
    else:
        verdict, new_state = ctl.decide_watch(policy, state, metrics, reference_rmse, deployment)
        action, rule, reason = verdict.action, verdict.rule, verdict.reason
        if action == ctl.RETRAIN:
            action, rule, step_reason, outcome, new_state = _retrain_and_deploy(
                ctx, new_state, metrics, deployment.blue
            )
            reason = f"{reason} -> {step_reason}"
    details: dict[str, Any] = {
        "evidence": verdict.evidence,
        "thresholds": verdict.thresholds,
        "outcome": outcome,
    }
    if action not in (ctl.NONE, ctl.WAIT):
        details["alert"] = ctx.alerter.send(action, rule, reason, details)
    decision = Decision(metrics.start, action, rule, reason, details)
    ctx.store.record(decision)
    ctx.store.save_state(replace(new_state, last_window=metrics.start))
    return decision


@dataclass(frozen=True)
class CycleResult:
    """One monitoring cycle: the window it measured, the decision it took, the loop's state
    after it. ``to_dict`` is the CLI's ``--json``."""

    window: WindowMetrics
    decision: Decision
    state: LoopState

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.to_dict(),
            "decision": self.decision.to_dict(),
            "state": self.state.to_dict(),
        }


def run_cycle(ctx: LoopContext, start: str, end: str) -> CycleResult:
    """Observe [start, end) and act on it, holding the loop's lock."""
    with ctx.store.locked():
        metrics, deployment, reference_rmse = observe(ctx, start, end)
        decision = act(ctx, metrics, deployment, reference_rmse)
    return CycleResult(metrics, decision, ctx.store.state())
