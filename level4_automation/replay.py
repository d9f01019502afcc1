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
import math
import re
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
from shared.data.schema import DISTANCE, DO, DROPOFF, PICKUP, PU
from shared.data.sources import GENERATED, MonthSource, load_source
from shared.data.validate import ValidationBounds, clean_trips
from shared.errors import ConfigError
from shared.evaluate import rmse as shared_rmse
from shared.services import free_port, http_json, start_service
from shared.settings import Settings
from shared.statedb import state_locations

logger = logging.getLogger(__name__)

KINDS = {"slower": 1.4, "garbage": 0.3, "bad-candidate": 1.0}
_INJECTION = re.compile(r"^(\d{4}-\d{2}):([a-z-]+)(?:=([0-9.]+))?$")
PREDICT_BATCH = 500
FEEDBACK_BATCH = 2000


@dataclass(frozen=True)
class Injection:
    """``slower[=F]``: from MONTH on, every trip takes F times as long (concept drift: the inputs
    do not change, only the answer). ``garbage[=S]``: in MONTH only, a share S of rides get an
    absurd distance or a negative duration. ``bad-candidate``: at MONTH, someone deploys a
    deliberately bad model (trained on shuffled durations) as a canary."""

    month: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Injection:
        found = _INJECTION.match(text.strip())
        if not found or found.group(2) not in KINDS:
            raise ConfigError(
                f"--inject-drift {text!r}: expected MONTH:KIND[=VALUE] with KIND one of "
                f"{', '.join(KINDS)} (e.g. 2019-06:slower=1.4)"
            )
        month, kind, value = found.groups()
        number = float(value) if value else KINDS[kind]
        if kind == "slower" and not 0.1 <= number <= 10:
            raise ConfigError(f"--inject-drift {text!r}: slower factor must be in 0.1..10")
        if kind == "garbage" and not 0 < number <= 1:
            raise ConfigError(f"--inject-drift {text!r}: garbage share must be in (0, 1]")
        return cls(month, kind, number)


@dataclass(frozen=True)
class ReplayConfig:
    months: list[str]
    out_dir: Path
    data_dir: str = GENERATED  # a folder of TLC files, or "generated"
    rows: int = 10_000  # generated months only
    injections: list[Injection] = field(default_factory=list)
    seed: int = 0
    policy_path: Path | None = None
    workers: int = 2

    def __post_init__(self) -> None:
        if len(self.months) < 2:
            raise ConfigError("--months: a replay needs at least two months (train, then serve)")
        for injection in self.injections:
            if injection.month not in self.months[1:]:
                raise ConfigError(
                    f"--inject-drift {injection.month}: not one of the replayed months after "
                    f"the first ({self.months[1]}..{self.months[-1]})"
                )


# ------------------------------------------------------------------------ data (pure)


def load_trips(config: ReplayConfig, month: str, index: int) -> pd.DataFrame:
    source = MonthSource(config.data_dir, month, rows=config.rows, seed=config.seed * 1000 + index)
    frame = load_source(source).trips.frame
    return frame[[PICKUP, DROPOFF, PU, DO, DISTANCE]].reset_index(drop=True)


def inject(frame: pd.DataFrame, month: str, injections: list[Injection], seed: int) -> pd.DataFrame:
    """Apply every injection active in ``month`` (``slower`` lasts; ``garbage`` is one month)."""
    out = frame.copy()
    for injection in injections:
        if injection.kind == "slower" and month >= injection.month:
            out[DROPOFF] = out[PICKUP] + (out[DROPOFF] - out[PICKUP]) * injection.value
        elif injection.kind == "garbage" and month == injection.month:
            rng = np.random.default_rng(seed)
            rows = rng.choice(len(out), size=int(len(out) * injection.value), replace=False)
            absurd, backwards = rows[: len(rows) // 2], rows[len(rows) // 2 :]
            out.loc[absurd, DISTANCE] = 5000.0
            out.loc[backwards, DROPOFF] = out.loc[backwards, PICKUP] - pd.Timedelta(minutes=10)
    return out


def valid_mask(frame: pd.DataFrame, month: str, bounds: ValidationBounds) -> np.ndarray:
    """Rides inside the modelled problem (what RMSE is measured on, as in training)."""
    tagged = frame.assign(_row=np.arange(len(frame)))
    clean, _ = clean_trips(tagged, bounds, month=month, source=month)
    mask = np.zeros(len(frame), dtype=bool)
    mask[clean["_row"].to_numpy()] = True
    return mask


def durations(frame: pd.DataFrame) -> np.ndarray:
    return ((frame[DROPOFF] - frame[PICKUP]).dt.total_seconds() / 60.0).to_numpy()


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float | None:
    ok = ~np.isnan(predicted)
    if not ok.any():
        return None
    return shared_rmse(actual[ok], predicted[ok])


def _clean_number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def ride_payloads(frame: pd.DataFrame, month: str) -> list[dict[str, Any] | None]:
    """One request body per ride (None where the ride has no pickup time to place it)."""
    pickups = frame[PICKUP].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist()
    out: list[dict[str, Any] | None] = []
    for i, (pu, do, dist, pickup) in enumerate(
        zip(frame[PU].tolist(), frame[DO].tolist(), frame[DISTANCE].tolist(), pickups, strict=True)
    ):
        if not isinstance(pickup, str):
            out.append(None)
            continue
        out.append(
            {
                "ride_id": f"{month}:{i}",
                PU: _clean_number(int(pu) if pu == pu and pu is not None else None),
                DO: _clean_number(int(do) if do == do and do is not None else None),
                DISTANCE: _clean_number(float(dist) if dist is not None else None),
                "pickup_datetime": pickup,
            }
        )
    return out


# --------------------------------------------------------------------- the service side


def _named_items(answer: Any, prefix: str) -> set[int]:
    """The list indexes a refusal names (``[3].trip_distance``, ``feedback[3].duration``)."""
    errors = answer.get("errors", []) if isinstance(answer, dict) else []
    return {
        int(e["field"][len(prefix) : e["field"].index("]")])
        for e in errors
        if e["field"].startswith(prefix)
    }


def post_dropping_refused(
    url: str,
    batch: list[Any],
    body: Any,
    prefix: str,
    headers: dict[str, str] | None = None,
) -> tuple[Any, list[Any], int]:
    """POST ``body(batch)`` until it is accepted. A refusal (400) names its bad items by index
    (``[3].trip_distance``, ``feedback[3].duration``, after ``prefix``): those are dropped and
    the rest resent, as a client of a validating API does. Returns the answer, the batch it
    answers, and how many items were dropped (an empty batch is never sent)."""
    dropped = 0
    answer: Any = None
    while batch:
        status, answer = http_json("POST", url, body(batch), headers=headers, timeout=60)
        if status == 200:
            return answer, batch, dropped
        bad = _named_items(answer, prefix)
        if status != 400 or not bad:
            raise ConfigError(f"{url}: HTTP {status}: {answer}")
        dropped += len(bad)
        batch = [item for k, item in enumerate(batch) if k not in bad]
    return answer, batch, dropped


def stream(url: str, rides: list[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray, int]:
    """Predict every ride in batches. A refused batch names its bad rides (``[i].field``): those
    are dropped and the rest resent, as a client of a validating API does. Returns
    (predictions, version per ride, refused count)."""
    predicted = np.full(len(rides), np.nan)
    versions = np.zeros(len(rides), dtype=np.int64)
    refused = 0
    indexed = [(i, r) for i, r in enumerate(rides) if r is not None]
    for offset in range(0, len(indexed), PREDICT_BATCH):
        answer, batch, dropped = post_dropping_refused(
            f"{url}/predict",
            indexed[offset : offset + PREDICT_BATCH],
            lambda kept: [r for _, r in kept],
            "[",
        )
        refused += dropped
        for (i, _), item in zip(batch, answer["predictions"] if batch else [], strict=True):
            predicted[i] = item["duration"]
            versions[i] = int(item["model_version"])
    return predicted, versions, refused


def send_feedback(
    url: str,
    rides: list[dict[str, Any] | None],
    predicted: np.ndarray,
    actual: np.ndarray,
    token: str,
) -> dict[str, int]:
    """Post the rides' actual durations (``token``: the service's feedback token)."""
    items = [
        {"ride_id": ride["ride_id"], "duration": float(actual[i])}
        for i, ride in enumerate(rides)
        if ride is not None and not np.isnan(predicted[i]) and not np.isnan(actual[i])
    ]
    accepted = refused = 0
    for offset in range(0, len(items), FEEDBACK_BATCH):
        # a malformed label refuses its whole batch, named by index: dropped, the rest resent
        answer, batch, dropped = post_dropping_refused(
            f"{url}/feedback",
            items[offset : offset + FEEDBACK_BATCH],
            lambda kept: {"feedback": kept},
            "feedback[",
            headers={"Authorization": f"Bearer {token}"},
        )
        refused += dropped
        if batch:
            accepted += answer["accepted"]
            refused += len(answer["rejected"])
    return {"accepted": accepted, "refused": refused}


# ------------------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class ReplayRow:
    """One replayed month: its rides, each model's RMSE on the valid ones, and what level 4
    did (a row of table.json and table.md)."""

    month: str
    rides: int
    refused_rides: int
    refused_labels: int
    valid_rides: int
    rmse_static_level1: float | None
    rmse_static_champion: float | None
    rmse_automated: float | None
    served_by: dict[str, int]
    action: str
    rule: str
    reason: str
    blue_after: int | None
    green_after: int | None


def write_plot(table: list[ReplayRow], injections: list[Injection], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    months = [row.month for row in table]
    x = np.arange(len(months))
    fig, ax = plt.subplots(figsize=(max(7, len(months) * 0.6), 4.2))
    series = [
        ("rmse_static_level1", "static level-1 model (never retrained)", "tab:gray", "--"),
        ("rmse_static_champion", "static level-2 champion (never retrained)", "tab:orange", ":"),
        ("rmse_automated", "level 4: automated system (served answers)", "tab:blue", "-"),
    ]
    for key, label, color, style in series:
        values = [np.nan if (v := getattr(row, key)) is None else v for row in table]
        ax.plot(x, values, style, color=color, marker="o", label=label)
    for i, row in enumerate(table):
        if row.action in ("promote", "rollback", "canary_deployed", "retrain_blocked"):
            ax.annotate(
                row.action.replace("_", " "),
                (x[i], row.rmse_automated or 0),
                textcoords="offset points",
                xytext=(0, 10),
                ha="center",
                fontsize=7,
            )
    for injection in injections:
        if injection.month in months:
            ax.axvline(months.index(injection.month), color="tab:red", alpha=0.4)
            ax.text(
                months.index(injection.month),
                ax.get_ylim()[1],
                f" {injection.kind}",
                color="tab:red",
                va="top",
                fontsize=8,
            )
    ax.set_xticks(x, months, rotation=45, ha="right")
    ax.set_ylabel("RMSE (minutes)")
    ax.set_title("Monthly RMSE on valid rides: static models vs the closed loop")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(table: list[ReplayRow]) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| month | rides | refused | RMSE static L1 | RMSE static champion | RMSE automated "
        "| blue after | decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row.month} | {row.rides} | {row.refused_rides} "
            f"| {fmt(row.rmse_static_level1)} | {fmt(row.rmse_static_champion)} "
            f"| {fmt(row.rmse_automated)} | v{row.blue_after} "
            f"| {row.action} ({row.rule}) |"
        )
    return "\n".join(lines) + "\n"


def deterministic(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision log without wall-clock and delivery fields: what a rerun must reproduce."""
    out = []
    for d in decisions:
        details = {k: v for k, v in d["details"].items() if k != "alert"}
        out.append(
            {k: v for k, v in d.items() if k not in ("recorded_at", "id")} | {"details": details}
        )
    return out


# -------------------------------------------------------------------------------- run


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
    url: str = ""


def run_replay(config: ReplayConfig, settings: Settings, progress: Any = None) -> dict[str, Any]:
    """Run the whole replay; ``progress(line)`` gets a line per month. ``settings`` are the
    replay's world: their home is ``config.out_dir``, with the runtime configured for it (the
    CLI does both)."""
    from level4_automation.policy import load_policy

    say = progress or (lambda line: None)
    started = time.perf_counter()
    if settings.home.resolve() != config.out_dir.resolve():
        raise ConfigError("run_replay: TAXI_MLOPS_HOME must be the replay folder")
    work = config.out_dir / "replay"
    work.mkdir(parents=True, exist_ok=True)
    frames = {m: load_trips(config, m, i) for i, m in enumerate(config.months)}
    say(f"loaded {len(frames)} months from {config.data_dir}")
    run = _Run(
        config, settings, load_policy(config.policy_path), ValidationBounds(), work, frames, say
    )
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
    return {"version": version, **asdict(initial.best)}


def _replay_month(run: _Run, index: int, month: str) -> ReplayRow:
    """One month: its rides through the service, their labels, a monitoring cycle; the row."""
    from level4_automation.flow import monitoring_flow
    from shared.settings import admin_token, feedback_token

    config, url = run.config, run.url
    admin = AdminClient(url, admin_token(run.settings))
    for injection in config.injections:
        if injection.month == month and injection.kind == "bad-candidate":
            previous = run.frames[config.months[index - 1]]
            _deploy_bad_candidate(previous, run, admin)
            admin.settle()
    frame = inject(run.frames[month], month, config.injections, config.seed + index)
    rides = ride_payloads(frame, month)
    predicted, versions, refused = stream(url, rides)
    actual = durations(frame)
    labels = send_feedback(url, rides, predicted, actual, feedback_token(run.settings))
    result = monitoring_flow(
        start=f"{month}-01T00:00:00",
        end=f"{pd.Period(month, 'M') + 1}-01T00:00:00",
        policy_path=str(config.policy_path) if config.policy_path else None,
        level3_url=url,
    )
    decision = result.decision
    admin.settle()
    valid = valid_mask(frame, month, run.bounds)
    clean, truth = frame[valid], actual[valid]
    _, state = http_json("GET", f"{url}/health")
    served = zip(*np.unique(versions[valid], return_counts=True), strict=True)
    row = ReplayRow(
        month=month,
        rides=len(frame),
        refused_rides=refused,
        refused_labels=labels["refused"],
        valid_rides=int(valid.sum()),
        rmse_static_level1=rmse(run.static_l1.predict(clean), truth),
        rmse_static_champion=rmse(run.static_champion.predict(clean), truth),
        rmse_automated=rmse(predicted[valid], truth),
        served_by={str(v): int(n) for v, n in served},
        action=decision.action,
        rule=decision.rule,
        reason=decision.reason,
        blue_after=state["blue"],
        green_after=state["green"],
    )
    run.say(
        f"{month}: {len(frame)} rides ({refused} refused), RMSE static L1 "
        f"{_f(row.rmse_static_level1)}, static champion "
        f"{_f(row.rmse_static_champion)}, automated {_f(row.rmse_automated)} -> "
        f"{decision.action} ({decision.rule})"
    )
    return row


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
    return {
        "out_dir": str(config.out_dir),
        "months": config.months,
        "injections": [asdict(i) for i in config.injections],
        "initial_champion": initial,
        "table": rows,
        "promotions": sum(1 for r in table if r.action == "promote"),
        "rollbacks": sum(1 for r in table if r.action == "rollback"),
        "retrains": sum(1 for r in table if r.action in retrain_actions),
        "mean_rmse_after_injection": _after_first_injection(table, config.injections),
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


def _after_first_injection(
    table: list[ReplayRow], injections: list[Injection]
) -> dict[str, float | None]:
    slower = [i.month for i in injections if i.kind == "slower"]
    if not slower:
        return {}
    rows = [r for r in table if r.month > min(slower)]  # the months after the drift began

    def mean(key: str) -> float | None:
        values = [v for v in (getattr(r, key) for r in rows) if v is not None]
        return round(float(np.mean(values)), 4) if values else None

    return {
        "months": len(rows),
        "static_level1": mean("rmse_static_level1"),
        "static_champion": mean("rmse_static_champion"),
        "automated": mean("rmse_automated"),
    }


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
