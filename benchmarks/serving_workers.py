"""Sync workers against threaded workers with client deadlines, in one run.

The same level-1 service (one model file, 2 gunicorn workers) is started twice: `--threads 1`
(gunicorn's sync workers, the old default) and `--threads 8` (the default: gthread workers whose
client sockets time out, shared/gunicorn_worker.py). For each it measures

- throughput and latency under wrk (8 connections, single-ride requests; Python clients when
  wrk is missing), and
- what four clients that send their headers and one byte of body do to `GET /health`: the
  slowest of ten probes, each bounded at 3 s.

It prints the ratios (threaded / sync). Run: `python -m benchmarks.serving_workers`.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.scaleout import LUA, load_python, load_wrk
from shared.data.generator import generate_month
from shared.services import ServiceProcess, free_port, start_service

CLI = str(Path(sys.executable).with_name("taxi-mlops"))
PROBE_TIMEOUT_S = 3.0


def train(root: Path) -> Path:
    files = []
    for i, month in enumerate(["2019-01", "2019-02"]):
        files.append(root / f"yellow_tripdata_{month}.parquet")
        generate_month(month, 5000, seed=i).to_parquet(files[-1])
    model = root / "model.joblib"
    subprocess.run(  # noqa: S603 - our own CLI
        [CLI, "level1", "train", "--train", str(files[0]), "--val", str(files[1]), "--out", model],
        check=True,
        capture_output=True,
    )
    return model


def serve(model: Path, threads: int, root: Path) -> ServiceProcess:
    port = free_port()
    command = [CLI, "level1", "serve", "--model", str(model), "--port", str(port)]
    command += ["--workers", "2", "--threads", str(threads)]
    return start_service(command, f"http://127.0.0.1:{port}", root / f"serve-{threads}.log")


def stalled_health(url: str, stalled: int = 4) -> float:
    """The slowest of ten /health probes while ``stalled`` clients hold a request open
    (PROBE_TIMEOUT_S when a probe got no answer in time)."""
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    slowest = 0.0
    try:
        for _ in range(stalled):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            sockets.append(sock)
        time.sleep(0.5)
        for _ in range(10):
            began = time.monotonic()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=PROBE_TIMEOUT_S) as r:  # noqa: S310 - loopback
                    r.read()
                slowest = max(slowest, time.monotonic() - began)
            except OSError:
                slowest = PROBE_TIMEOUT_S
    finally:
        for sock in sockets:
            sock.close()
    return slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "python"
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        root = Path(tmp)
        model = train(root)
        script = root / "predict.lua"
        script.write_text(LUA)
        for threads in (1, 8):
            with serve(model, threads, root) as service:
                url = service.url
                if tool == "wrk":
                    load = load_wrk(url, args.seconds, args.connections, script)
                else:
                    load = load_python(url, args.seconds, args.connections)
                load["health_under_stall_s"] = stalled_health(url)
                results[threads] = load
    print(f"level-1 service, 2 workers, {tool}, {args.connections} connections:")  # noqa: T201
    for threads, r in results.items():
        kind = (
            "sync (--threads 1)" if threads == 1 else f"gthread + deadlines (--threads {threads})"
        )
        print(  # noqa: T201
            f"  {kind:<34} {r['requests_per_s']:8.0f} req/s  p99 {r['p99_ms']:6.1f} ms  "
            f"failed {r['failed']}  /health with 4 stalled clients: "
            f"{r['health_under_stall_s']:.3f} s"
        )
    sync, threaded = results[1], results[8]
    ratio = threaded["requests_per_s"] / sync["requests_per_s"]
    print(f"  throughput ratio threaded / sync: {ratio:.2f}x")  # noqa: T201


if __name__ == "__main__":
    main()
