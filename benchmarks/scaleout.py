"""Scale-out serving benchmark (issue 8), in one run, printed as ratios.

The level-3 A/B service (one champion as blue, a green at 50 %), single-ride requests:

1. one replica, called directly (the baseline: no proxy);
2. nginx in front of that one replica (what the proxy costs);
3. nginx in front of two replicas (what a second replica buys on this machine).

Each replica is `taxi-mlops level3 serve` with 2 gunicorn workers, sharing one home (state and
prediction log), exactly as `taxi-mlops stack up` runs them; nginx has the stack's config. The
load comes from wrk when installed (`apt-get install wrk`), else from Python processes (slower:
they compete with the service for the CPU, so the absolute figures are lower). The configs run
in rotation, twice each, and the best of each is kept.

Runs in a temporary TAXI_MLOPS_HOME. Usage: python -m benchmarks.scaleout [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import click

from benchmarks.cpu import cpu_spent
from shared.errors import ConfigError
from shared.services import ServiceProcess, free_port, http_json, start_service
from taxi_mlops.stack import nginx

BIN = Path(sys.executable).parent
RIDE = {"PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.5}
LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"ride_id": "bench-%d", "PULocationID": 161, "DOLocationID": 236, "trip_distance": 2.5}',
    counter)
  return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
end
"""


def cli(home: Path, *args: str) -> dict:
    env = {**os.environ, "TAXI_MLOPS_HOME": str(home)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    completed = subprocess.run(  # noqa: S603 - our own CLI
        [str(BIN / "taxi-mlops"), *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"taxi-mlops {' '.join(args[:2])} failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


def start_replica(home: Path, port: int) -> ServiceProcess:
    env = {
        "TAXI_MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
    }
    command = [str(BIN / "taxi-mlops"), "level3", "serve", "--port", str(port), "--workers", "2"]
    return start_service(
        command, f"http://127.0.0.1:{port}", home / f"replica-{port}.log", env=env, timeout_s=180
    )


def start_nginx(root: Path, upstreams: list[int]) -> ServiceProcess:
    try:
        return nginx.start_proxy(root, upstreams)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None


def load_wrk(url: str, seconds: float, connections: int, script: Path) -> dict:
    out = subprocess.run(  # noqa: S603
        [
            shutil.which("wrk") or "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            "--latency",
            "-s",
            str(script),
            f"{url}/predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def latency(pct: str) -> float:
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "requests_per_s": rate,
        "requests": int(total.group(1)) if total else round(rate * seconds),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "failed": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def _python_client(args: tuple[str, float]) -> tuple[int, int, list[float]]:
    url, until = args
    ok = failed = 0
    latencies: list[float] = []
    i = 0
    while time.time() < until:
        i += 1
        sent = time.perf_counter()
        status, _ = http_json(
            "POST", f"{url}/predict", {**RIDE, "ride_id": f"py-{os.getpid()}-{i}"}
        )
        latencies.append((time.perf_counter() - sent) * 1000)
        ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
    return ok, failed, latencies


def load_python(url: str, seconds: float, connections: int) -> dict:
    until = time.time() + seconds
    with multiprocessing.Pool(connections) as pool:
        parts = pool.map(_python_client, [(url, until)] * connections)
    latencies = sorted(x for _, _, lat in parts for x in lat)
    ok = sum(p[0] for p in parts)
    return {
        "requests_per_s": ok / seconds,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[int(len(latencies) * 0.99)],
        "failed": sum(p[1] for p in parts),
        "socket_errors": "n/a",
    }


def load_arguments(doc: str, name: str, rounds: int) -> tuple[argparse.Namespace, Path]:
    """The options every wrk benchmark takes (seconds, connections, rounds, --out), and where
    its results go (.taxi-mlops/reports/bench/NAME.json unless --out)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    return args, args.out or Path(f".taxi-mlops/reports/bench/{name}.json").resolve()


def best_of_rounds(
    configs: dict[str, str],
    rounds: int,
    seconds: float,
    connections: int,
    script: Path | dict[str, Path],
    pids: dict[str, int] | None = None,
) -> tuple[dict[str, dict], dict[str, int]]:
    """Load each config's URL in rotation, ``rounds`` times; the best round of each, and how
    many requests each answered in all (wrk when installed, with one Lua script or one per
    config; else Python clients posting one ride). With ``pids`` (each config's server
    process) and wrk, each round also records the CPU a request cost the server and wrk."""
    tool = "wrk" if shutil.which("wrk") else "python"
    best: dict[str, dict] = {}
    answered = dict.fromkeys(configs, 0)
    width = max(len(name) for name in configs) + 1
    for round_ in range(rounds):
        for name, url in configs.items():
            if tool == "wrk":
                scripted = script[name] if isinstance(script, dict) else script
                pid = (pids or {}).get(name)
                with cpu_spent(pid) if pid is not None else nullcontext() as spent:
                    result = load_wrk(url, seconds, connections, scripted)
                if spent is not None:
                    result.update(spent.per_request_us(result["requests"]))
            else:
                result = load_python(url, seconds, connections)
            answered[name] += round(result["requests_per_s"] * seconds)
            click.echo(
                f"round {round_ + 1} {name:<{width}} {result['requests_per_s']:8.0f} req/s  "
                f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
                f"failed {result['failed']}{_cpu_text(result)}"
            )
            if name not in best or result["requests_per_s"] > best[name]["requests_per_s"]:
                best[name] = result
    return best, answered


def _cpu_text(result: dict) -> str:
    if result.get("server_cpu_us") is None:
        return ""
    server, client = result["server_cpu_us"], result["client_cpu_us"]
    return f"  CPU a request: server {server:.0f} us, wrk {client:.0f} us"


def main() -> None:
    args, out = load_arguments(__doc__, "scaleout", rounds=2)
    tool = "wrk" if shutil.which("wrk") else "python"

    with tempfile.TemporaryDirectory(prefix="taxi-bench-scale-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        home = root / "home"
        click.echo("training two versions (a champion and a green)...")
        common = ["--generated", "--rows", "20000", "--trials", "1"]
        cli(home, "level2", "train", *common, "--train-months", "2019-01", "--val-month",
            "2019-02", "--models", "hgb")  # fmt: skip
        cli(home, "level2", "train", *common, "--train-months", "2019-02", "--val-month",
            "2019-03", "--models", "ridge")  # fmt: skip
        ports = [free_port(), free_port()]
        first = stack.enter_context(start_replica(home, ports[0]))
        stack.enter_context(start_replica(home, ports[1]))
        cli(home, "level3", "deploy", "--version", "2", "--share", "50", "--url", first.url)
        time.sleep(2)  # both replicas' workers poll the new state within 0.5 s
        one = stack.enter_context(start_nginx(root, ports[:1]))
        two = stack.enter_context(start_nginx(root, ports))
        script = root / "post.lua"
        script.write_text(LUA)
        configs = {
            "1 replica, direct": first.url,
            "nginx -> 1 replica": one.url,
            "nginx -> 2 replicas": two.url,
        }
        best, _ = best_of_rounds(configs, args.rounds, args.seconds, args.connections, script)

    base = best["nginx -> 1 replica"]["requests_per_s"]
    results = {
        "tool": tool,
        "cpus": os.cpu_count(),
        "connections": args.connections,
        "seconds": args.seconds,
        "best": best,
        "ratio_two_replicas_vs_one": best["nginx -> 2 replicas"]["requests_per_s"] / base,
        "ratio_nginx_vs_direct": base / best["1 replica, direct"]["requests_per_s"],
    }
    click.echo(
        f"\n2 replicas / 1 replica (through nginx): {results['ratio_two_replicas_vs_one']:.2f}x; "
        f"nginx / direct: {results['ratio_nginx_vs_direct']:.2f}x "
        f"({tool}, {results['cpus']} CPUs, {args.connections} connections)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    click.echo(f"results: {out}")


if __name__ == "__main__":
    main()
