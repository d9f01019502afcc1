"""A replay's outputs: a row per month, its table (Markdown), its plot, the decision log as a
rerun must reproduce it, and the mean RMSE after the drift began."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from level4_automation.replay_inject import Injection
from level4_automation.store import Decision


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
    #: the oracle: the champion's family and settings retrained on the previous month (as the
    #: service saw it), every month, with no gate and no canary: what retraining can reach
    rmse_oracle: float | None
    served_by: dict[str, int]
    action: str
    rule: str
    reason: str
    blue_after: int | None
    green_after: int | None
    #: every window's action, in order (the row's action is the most telling of them)
    window_actions: list[str] = field(default_factory=list)


#: which window's decision stands for a month in its row, most telling first
HEADLINE = (
    "promote",
    "rollback",
    "canary_deployed",
    "gate_failed",
    "retrain_blocked",
    "retrain_failed",
    "alert",
    "wait",
)


def headline(decisions: list[Decision]) -> Decision:
    for action in HEADLINE:
        for decision in decisions:
            if decision.action == action:
                return decision
    return decisions[-1]


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
        ("rmse_oracle", "oracle: retrained on the previous month, every month", "tab:green", "-."),
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
        "| RMSE oracle | blue after | decision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row.month} | {row.rides} | {row.refused_rides} "
            f"| {fmt(row.rmse_static_level1)} | {fmt(row.rmse_static_champion)} "
            f"| {fmt(row.rmse_automated)} | {fmt(row.rmse_oracle)} | v{row.blue_after} "
            f"| {row.action} ({row.rule}){window_text(row)} |"
        )
    return "\n".join(lines) + "\n"


def window_text(row: ReplayRow) -> str:
    """Every window's action when a month had more than one."""
    return f" [{' -> '.join(row.window_actions)}]" if len(row.window_actions) > 1 else ""


def deterministic(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision log without wall-clock and delivery fields: what a rerun must reproduce."""
    out = []
    for d in decisions:
        details = {k: v for k, v in d["details"].items() if k != "alert"}
        out.append(
            {k: v for k, v in d.items() if k not in ("recorded_at", "id")} | {"details": details}
        )
    return out


def shift_month(
    table: list[ReplayRow], injections: list[Injection], max_increase: float
) -> tuple[str | None, str]:
    """The month the first shift began, and how it was found: the first injected slowdown, or
    else the first month the static champion's RMSE rose above its first replayed month's by
    more than ``max_increase`` (the policy's own degradation limit): a natural shift, found
    by the model nobody retrains, not by the loop under test."""
    slower = sorted(i.month for i in injections if i.kind == "slower")
    if slower:
        return slower[0], "injected"
    scored = [(r.month, r.rmse_static_champion) for r in table if r.rmse_static_champion]
    for month, value in scored[1:]:
        if value > scored[0][1] * (1 + max_increase):
            return month, "natural"
    return None, "none"


@dataclass(frozen=True)
class AfterShift:
    """Mean RMSE per series over the months after the first shift, and each against the
    oracle (1.0 = as good as retraining every month)."""

    shift_month: str
    found: str
    months: int
    static_level1: float | None
    static_champion: float | None
    automated: float | None
    oracle: float | None
    automated_over_oracle: float | None
    static_champion_over_oracle: float | None


def after_shift(
    table: list[ReplayRow], injections: list[Injection], max_increase: float
) -> AfterShift | None:
    month, found = shift_month(table, injections, max_increase)
    rows = [r for r in table if month is not None and r.month > month]
    if month is None or not rows:
        return None

    def mean(key: str) -> float | None:
        values = [v for v in (getattr(r, key) for r in rows) if v is not None]
        return round(float(np.mean(values)), 4) if values else None

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return round(top / bottom, 3) if top is not None and bottom else None

    means = {k: mean(f"rmse_{k}") for k in ("static_level1", "static_champion", "automated")}
    oracle = mean("rmse_oracle")
    return AfterShift(
        month,
        found,
        len(rows),
        **means,
        oracle=oracle,
        automated_over_oracle=ratio(means["automated"], oracle),
        static_champion_over_oracle=ratio(means["static_champion"], oracle),
    )
