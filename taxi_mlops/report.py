"""The comparison report: what each level's commands measured, as Markdown and as one
self-contained HTML page (plots embedded, no script, no external file)."""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

#: what a level gives, in words: the parts of the comparison that are not measured
LEVELS: dict[int, dict[str, Any]] = {
    0: {
        "name": "notebook",
        "manual": [
            "run the notebook on the new month",
            "hand the pickle to whoever serves it",
        ],
        "tracked": "nothing: the notebook's last run, overwritten by the next",
        "rollback": "none: the previous pickle is gone unless someone kept a copy",
    },
    1: {
        "name": "script + gunicorn service",
        "manual": [
            "run the training script on the new month",
            "restart the service on the new model file",
            "keep the previous file, to roll back",
        ],
        "tracked": "the model file and its metadata (data files, metrics); no run history",
        "rollback": "restart the service on the previous file",
    },
    2: {
        "name": "Prefect pipeline + MLflow registry",
        "manual": [
            "start the training flow on the new month (or schedule it)",
            "put the registered version into a service by hand",
        ],
        "tracked": "every trial's parameters, metrics and model in MLflow; registry versions "
        "and the alias history",
        "rollback": "move the champion alias back; nothing serves the registry at this level",
    },
    3: {
        "name": "blue/green + A/B from the registry",
        "manual": [
            "decide to retrain and start the flow",
            "`level3 deploy` the new version to green",
            "read `level3 ab-report`, then `level3 promote` (or `rollback`)",
        ],
        "tracked": "level 2's, plus the deployment history and every prediction with its label",
        "rollback": "`taxi-mlops level3 rollback`: one call, every worker within a second",
    },
    4: {
        "name": "monitoring + retraining + gated canary",
        "manual": ["none per month: a person writes the policy once"],
        "tracked": "level 3's, plus every decision with its evidence, and Evidently reports",
        "rollback": "automatic as soon as the always-valid A/B test shows the canary worse "
        "(read at every monitoring cycle)",
    },
}

#: the replay's RMSE series that stands for each level's model over the months
SERIES = {
    1: "rmse_static_level1",
    2: "rmse_static_champion",
    3: "rmse_static_champion",
    4: "rmse_automated",
}
#: relative validation-RMSE gap under which level 0's model counts as level 1's
PROXY_TOLERANCE = 0.02
SERIES_LABEL = {
    "rmse_static_level1": "levels 0-1: the course's model, never retrained",
    "rmse_static_champion": "levels 2-3: the first champion, until a person deploys another",
    "rmse_automated": "level 4: the closed loop",
    "rmse_oracle": "oracle: retrained on the previous month, every month",
}


@dataclass(frozen=True)
class LevelMeasure:
    """What one level's own commands measured (from their ``--json`` answers)."""

    val_rmse: float | None
    new_val_rmse: float | None
    time_to_model_s: float | None
    time_to_served_s: float | None
    rollback_s: float | None


@dataclass(frozen=True)
class LevelRow:
    """One level in the comparison: what it measured, what it gives in words (LEVELS), and its
    RMSE over the evaluation months from the replay. Level 4 also has how many windows after
    the drift its new model was served, and its promotions and rollbacks."""

    level: int
    name: str
    manual: list[str]
    tracked: str
    rollback: str
    val_rmse: float | None
    new_val_rmse: float | None
    time_to_model_s: float | None
    time_to_served_s: float | None
    rollback_s: float | None
    series: str | None
    eval_rmse_mean: float | None
    windows_to_served: int | None = None
    promotions: int | None = None
    rollbacks: int | None = None


@dataclass(frozen=True)
class Comparison:
    """The comparison report's content; ``to_dict`` is comparison.json and the ``--json``."""

    data: str
    months: list[str]
    train_month: str
    val_month: str
    evaluation_months: list[str]
    drift: list[dict[str, Any]]
    drift_month: str | None
    levels: list[LevelRow]
    #: per replayed month: each series' RMSE and level 4's action
    monthly: list[dict[str, Any]]
    #: the replay's means over the months after the first shift, and their ratios to the oracle
    after_shift: dict[str, Any] | None = None
    #: filled in by `compare` after the report is built
    validation: dict[str, Any] = field(default_factory=dict)
    level1_service: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    files: dict[str, Any] = field(default_factory=dict)
    browser_check: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": True, **asdict(self)}


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def _windows_toserved_text(table: list[dict[str, Any]], drift_month: str | None) -> int | None:
    """Monitoring windows from the start of the drift month to the first promotion."""
    if drift_month is None:
        return None
    later = [r for r in table if r["month"] >= drift_month]
    actions = [a for r in later for a in (r.get("window_actions") or [r["action"]])]
    return actions.index("promote") + 1 if "promote" in actions else None


NOT_MEASURED = LevelMeasure(None, None, None, None, None)


def build(
    months: list[str], measured: dict[int, LevelMeasure], replay: dict[str, Any], data: str
) -> Comparison:
    """The report's content: measured values per level, joined with the level-4 replay (its
    ``--json`` answer)."""
    table = replay["table"]
    evaluation = [r for r in table if r["month"] >= months[2]]
    drift = sorted(i["month"] for i in replay.get("injections", []) if i["kind"] == "slower")
    drift_month = drift[0] if drift else None
    series = _series(measured)
    levels = []
    for level in range(5):
        found, key = measured.get(level, NOT_MEASURED), series.get(level)
        row = LevelRow(
            level,
            **LEVELS[level],
            **asdict(found),
            series=key,
            eval_rmse_mean=_mean([r[key] for r in evaluation]) if key else None,
        )
        if level == 4:
            row = replace(
                row,
                val_rmse=replay["initial_champion"].get("val_rmse"),
                windows_to_served=_windows_toserved_text(table, drift_month),
                promotions=replay["promotions"],
                rollbacks=replay["rollbacks"],
            )
        levels.append(row)
    monthly = [
        {"month": r["month"], **{k: r[k] for k in SERIES_LABEL}, "action": r["action"]}
        for r in table
    ]
    evaluated = [r["month"] for r in evaluation]
    injected = replay.get("injections", [])
    return Comparison(
        data,
        months,
        months[0],
        months[1],
        evaluated,
        injected,
        drift_month,
        levels,
        monthly,
        replay.get("after_shift"),
    )


def _series(measured: dict[int, LevelMeasure]) -> dict[int, str]:
    """Which replay series stands for each level's model. Level 0's notebook trains the
    course's model too (its own cleaning): it shares level 1's line only if the two commands'
    validation RMSEs agree within PROXY_TOLERANCE."""
    series = dict(SERIES)
    level0, level1 = measured[0].val_rmse, measured[1].val_rmse
    if level0 is not None and level1 and abs(level0 - level1) / level1 <= PROXY_TOLERANCE:
        series[0] = "rmse_static_level1"
    return series


# ------------------------------------------------------------------------------ rendering


def num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def _seconds(value: float | None, missing: str = "not served") -> str:
    return missing if value is None else f"{value:.1f} s"


def served_text(row: LevelRow) -> str:
    if row.level == 4:
        windows = row.windows_to_served
        return (
            "no drift promotion in this run"
            if windows is None
            else f"automatic: {windows} monitoring window(s) after the drift began"
        )
    return _seconds(row.time_to_served_s)


def _rollback(row: LevelRow) -> str:
    measured = "" if row.rollback_s is None else f" ({row.rollback_s:.1f} s)"
    return row.rollback + measured


def summary_lines(result: Comparison) -> list[str]:
    """The per-level table a terminal shows at the end of a comparison (and of the demo)."""
    lines = [f"{'level':<6}{'val RMSE':>9}{'RMSE, eval months':>19}  new month -> served model"]
    for row in result.levels:
        lines.append(
            f"{row.level:<6}{num(row.val_rmse):>9}{num(row.eval_rmse_mean):>19}  {served_text(row)}"
        )
    oracle = oracle_text(result)
    return lines + ([oracle] if oracle else [])


def oracle_text(result: Comparison) -> str | None:
    """Level 4 against the oracle after the first shift, in one sentence (None without one)."""
    after = result.after_shift
    if not after:
        return None
    return (
        f"Over the {after['months']} month(s) after the {after['found']} shift of "
        f"{after['shift_month']}: level 4 {num(after['automated'])}, the oracle "
        f"{num(after['oracle'])} (automated / oracle {after['automated_over_oracle']}); "
        f"the static champion {num(after['static_champion'])} (static / oracle "
        f"{after['static_champion_over_oracle']})."
    )


def plots(result: Comparison) -> dict[str, bytes]:
    """PNG bytes: RMSE month by month (one line per level's model) and the per-level bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    monthly = result.monthly
    x = list(range(len(monthly)))
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    styles = {
        "rmse_static_level1": ("tab:gray", "--"),
        "rmse_static_champion": ("tab:orange", ":"),
        "rmse_automated": ("tab:blue", "-"),
        "rmse_oracle": ("tab:green", "-."),
    }
    for key, label in SERIES_LABEL.items():
        color, style = styles[key]
        ax.plot(x, [r[key] for r in monthly], style, marker="o", color=color, label=label)
    if result.drift_month in [r["month"] for r in monthly]:
        at = [r["month"] for r in monthly].index(result.drift_month)
        ax.axvline(at - 0.5, color="tab:red", alpha=0.5)
        ax.annotate("drift injected", (at - 0.45, ax.get_ylim()[1]), va="top", color="tab:red")
    ax.set_xticks(x, [r["month"] for r in monthly], rotation=45, ha="right")
    ax.set_ylabel("RMSE (minutes)")
    ax.set_title("Monthly RMSE on valid rides, by maturity level")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out["rmse_over_time.png"] = _png(fig)
    plt.close(fig)

    levels = result.levels
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    names = [f"L{r.level}" for r in levels]
    left.bar(names, [r.eval_rmse_mean or 0 for r in levels], color="tab:blue")
    left.set_title("mean RMSE over the evaluation months")
    left.set_ylabel("minutes")
    served = [r.time_to_served_s for r in levels]
    right.bar(names, [s or 0 for s in served], color="tab:green")
    for i, s in enumerate(served):
        if s is None:
            right.annotate(
                "not served" if i < 4 else "automatic",
                (i, 0),
                ha="center",
                va="bottom",
                rotation=90,
                fontsize=8,
            )
    right.set_title("new month -> served model (compute)")
    right.set_ylabel("seconds")
    fig.tight_layout()
    out["levels.png"] = _png(fig)
    plt.close(fig)
    return out


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def markdown(result: Comparison) -> str:
    months = result.months
    lines = [
        "# taxi-mlops: what each maturity level buys",
        "",
        f"Data: {result.data}. Trained on {months[0]}, validated on {months[1]}; a new month "
        f"({months[2]}) then arrives; evaluation months {result.evaluation_months[0]}.."
        f"{result.evaluation_months[-1]}. Drift: "
        + (", ".join(f"{d['month']} {d['kind']}" for d in result.drift) or "none injected")
        + ".",
        "",
        "| level | | validation RMSE | mean RMSE, evaluation months | new month -> served model "
        "| manual steps | tracked | rollback |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result.levels:
        lines.append(
            f"| {row.level} | {row.name} | {num(row.val_rmse)} "
            f"| {num(row.eval_rmse_mean)} | {served_text(row)} "
            f"| {'; '.join(row.manual)} | {row.tracked} | {_rollback(row)} |"
        )
    lines += [
        "",
        *([oracle_text(result) or "", ""] if result.after_shift else []),
        "![RMSE by month](rmse_over_time.png)",
        "",
        "![Per level](levels.png)",
        "",
        "## Month by month (RMSE, minutes)",
        "",
        "| month | " + " | ".join(SERIES_LABEL.values()) + " | level-4 decision |",
        "|---" * (len(SERIES_LABEL) + 2) + "|",
    ]
    for r in result.monthly:
        lines.append(
            f"| {r['month']} | "
            + " | ".join(num(r[k]) for k in SERIES_LABEL)
            + f" | {r['action']} |"
        )
    lines += ["", "## How these were measured", "", *METHOD, ""]
    return "\n".join(lines)


METHOD = [
    "- Every number comes from the `--json` answer of the level's own command, run by "
    "`taxi-mlops compare` in one `TAXI_MLOPS_HOME` (the answers are kept under `raw/`).",
    "- Validation RMSE: `level0 run`, `level1 train`, `level2 train` (best family) on the "
    "first month, validated on the second; level 4's is its first champion's.",
    "- New month -> served model: the wall time of the commands a level needs until a model "
    "trained on the new month answers `/predict` (level 1: train + restart the service; level "
    "3: `level2 train` + `level3 deploy` + `level3 promote`). Levels 0 and 2 serve nothing. "
    "Time a person takes to notice, decide and type is not included: it is listed as manual "
    "steps. Level 4 acts on its own, one monitoring window at a time (from `level4 replay`).",
    "- Monthly RMSE: `level4 replay`, which streams every month through a live level-3 service "
    "and scores the model a level would be serving: the course's model trained on the first "
    "month (levels 0-1), the first champion (levels 2-3: a person may deploy another, nobody "
    "does here), and what the closed loop serves (level 4).",
    "- Oracle: in the same replay, the first champion's family and settings retrained on the "
    "whole previous month as the service saw it, every month, with no gate and no canary: what "
    "retraining can reach; automated / oracle is how much of it the loop delivers.",
    "- Rollback: level 1 restarts the service on the previous file; level 3 times "
    "`level3 rollback` after a promotion.",
]


_STYLE = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222;
       padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.35rem 0.5rem; vertical-align: top;
         text-align: left; }
th { background: #f3f3f3; }
ul { margin: 0; padding-left: 1.1rem; }
img { max-width: 100%; display: block; margin: 1rem 0; }"""


def _esc(value: Any) -> str:
    # `code` spans, as in the Markdown version
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(value)))


def _html_rows(result: Comparison) -> tuple[str, str]:
    """The levels table's rows and the month-by-month table's rows."""
    rows = "".join(
        "<tr>"
        f"<td>{r.level}</td><td>{_esc(r.name)}</td><td>{num(r.val_rmse)}</td>"
        f"<td>{num(r.eval_rmse_mean)}</td><td>{_esc(served_text(r))}</td>"
        f"<td><ul>{''.join(f'<li>{_esc(s)}</li>' for s in r.manual)}</ul></td>"
        f"<td>{_esc(r.tracked)}</td><td>{_esc(_rollback(r))}</td>"
        "</tr>"
        for r in result.levels
    )
    monthly = "".join(
        f"<tr><td>{r['month']}</td>"
        + "".join(f"<td>{num(r[k])}</td>" for k in SERIES_LABEL)
        + f"<td>{_esc(r['action'])}</td></tr>"
        for r in result.monthly
    )
    return rows, monthly


def html_page(result: Comparison, images: dict[str, bytes]) -> str:
    esc = _esc

    def img(name: str, alt: str) -> str:
        data = base64.b64encode(images[name]).decode()
        return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'

    months = result.months
    rows, monthly = _html_rows(result)
    drift = ", ".join(f"{d['month']} {d['kind']}" for d in result.drift) or "none injected"
    method = "".join(f"<li>{esc(m.removeprefix('- '))}</li>" for m in METHOD)
    evaluation = f"{result.evaluation_months[0]}..{result.evaluation_months[-1]}"
    headers = "".join(f"<th>{esc(v)}</th>" for v in SERIES_LABEL.values())
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>taxi-mlops: what each maturity level buys</title>
<style>
{_STYLE}
</style>
</head>
<body>
<h1>taxi-mlops: what each maturity level buys</h1>
<p>Data: {esc(result.data)}. Trained on {months[0]}, validated on {months[1]}; a new month
({months[2]}) then arrives; evaluation months {evaluation}.
Drift: {esc(drift)}. Run took {"-" if result.seconds is None else result.seconds} s.</p>
<table id="levels">
<tr><th>level</th><th></th><th>validation RMSE</th><th>mean RMSE, evaluation months</th>
<th>new month &rarr; served model</th><th>manual steps</th><th>tracked</th><th>rollback</th></tr>
{rows}
</table>
{"" if result.after_shift is None else f"<p>{esc(oracle_text(result))}</p>"}
{img("rmse_over_time.png", "RMSE by month, one line per level")}
{img("levels.png", "Mean RMSE and time to a served model, per level")}
<h2>Month by month (RMSE, minutes)</h2>
<table id="monthly">
<tr><th>month</th>{headers}<th>level-4 decision</th></tr>
{monthly}
</table>
<h2>How these were measured</h2>
<ul>{method}</ul>
</body>
</html>
"""


def write(result: Comparison, replay: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    images = plots(result)
    for name, data in images.items():
        (out_dir / name).write_bytes(data)
    md = out_dir / "report.md"
    md.write_text(markdown(result))
    page = out_dir / "report.html"
    page.write_text(html_page(result, images))
    return {
        "markdown": str(md),
        "html": str(page),
        "plots": [str(out_dir / n) for n in images],
        "replay": replay["out_dir"],
    }
