"""The loop against the oracle (issue 19): `taxi-mlops level4 replay` on the real months
2019-01..2020-02, with an injected slowdown and with only the natural shifts, for 1, 2 and 4
monitoring windows a month, under the default policy and with a monthly refresh. Prints
automated / oracle (and static champion / oracle) over the months after the first shift.

Each replay runs in its own folder under a temporary directory, through the CLI a user types.
Real months only: the figures are about real traffic (skipped with a message without them).

Usage: python -m benchmarks.loop [--windows 1,2,4] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "tlc-yellow-sample"
CLI = str(Path(sys.executable).with_name("taxi-mlops"))
MONTHS = "2019-01..2020-02"
SCENARIOS = {"injected": ("--inject-drift", "2019-06:slower=1.4"), "natural": ()}
#: retrain every month even when the error is fine (scaled with the windows by the replay)
REFRESH = "trigger:\n  refresh_windows: 1\n"


def replay(folder: Path, windows: int, scenario: str, policy: Path | None) -> dict[str, Any]:
    home = folder / "home"
    command = [CLI, "level4", "replay", "--json", "--data-dir", str(REAL), "--months", MONTHS]
    command += [*SCENARIOS[scenario], "--windows-per-month", str(windows)]
    command += ["--out", str(folder / "out")] + (["--policy", str(policy)] if policy else [])
    env = {
        **os.environ,
        "TAXI_MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
    }
    began = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own CLI, no shell
        command, capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    after = result["after_shift"]
    return {
        "windows_per_month": windows,
        "scenario": scenario,
        "refresh": policy is not None,
        "automated_over_oracle": after["automated_over_oracle"],
        "static_champion_over_oracle": after["static_champion_over_oracle"],
        "automated": after["automated"],
        "oracle": after["oracle"],
        "static_champion": after["static_champion"],
        "shift_month": after["shift_month"],
        "promotions": result["promotions"],
        "rollbacks": result["rollbacks"],
        "seconds": round(time.perf_counter() - began, 1),
    }


@click.command()
@click.option("--windows", default="1,2,4", show_default=True, help="Windows a month to try.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def main(windows: str, as_json: bool) -> None:
    if not any(REAL.glob("yellow_tripdata_2019-*.parquet")):
        click.echo(f"benchmarks.loop skipped: no real TLC months at {REAL}")
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="taxi-loop-") as tmp:
        refresh = Path(tmp) / "refresh.yaml"
        refresh.write_text(REFRESH)
        for n in (int(w) for w in windows.split(",")):
            for policy in (None, refresh):
                if n == 1 and policy is not None:
                    continue  # a monthly refresh with monthly windows retrains every window
                for scenario in SCENARIOS:
                    folder = Path(tmp) / f"{scenario}-w{n}-{'refresh' if policy else 'default'}"
                    row = replay(folder, n, scenario, policy)
                    rows.append(row)
                    click.echo(
                        f"windows/month {n}  {'refresh ' if policy else 'default '} "
                        f"{scenario:<9} automated / oracle {row['automated_over_oracle']:.3f}  "
                        f"static / oracle {row['static_champion_over_oracle']:.3f}  "
                        f"({row['seconds']:.0f} s)"
                    )
    if as_json:
        click.echo(json.dumps({"months": MONTHS, "replays": rows}))


if __name__ == "__main__":
    main()
