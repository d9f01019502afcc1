"""A replay's outputs: a row per month, its table (Markdown), its plot, the decision log as a
rerun must reproduce it, and the mean RMSE after the drift began."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from level4_automation.replay_inject import Injection


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


def after_first_injection(
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
