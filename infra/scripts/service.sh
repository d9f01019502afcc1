#!/usr/bin/env bash
# Start or stop one long-running process for Terraform's local environment.
#
#   service.sh start NAME RUN_DIR HEALTH_URL -- COMMAND [ARGS...]
#   service.sh stop NAME RUN_DIR
#
# start: runs COMMAND in its own session (setsid) with output in RUN_DIR/NAME.log, records its
# PID in RUN_DIR/NAME.pid, and waits until HEALTH_URL answers (or "-" for no check).
# stop: SIGTERM to the whole process group, SIGKILL after 15 s; no PID file = nothing to do.
set -euo pipefail

usage() {
  echo "usage: $0 start NAME RUN_DIR HEALTH_URL -- COMMAND... | $0 stop NAME RUN_DIR" >&2
  exit 2
}

[[ $# -ge 3 ]] || usage
action=$1 name=$2 run_dir=$3
pid_file="$run_dir/$name.pid"
log_file="$run_dir/$name.log"
mkdir -p "$run_dir"

alive() { [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

case $action in
  start)
    [[ $# -ge 6 && $5 == "--" ]] || usage
    health=$4
    shift 5
    if alive; then
      echo "$name already running (pid $(cat "$pid_file"))"
      exit 0
    fi
    # A new session (so stop can signal the whole group) with no inherited descriptors: a
    # service holding its caller's pipes would keep `terraform apply` (or a test) waiting.
    python3 - "$log_file" "$pid_file" "$@" <<'PY'
import subprocess, sys
log, pid, *command = sys.argv[1:]
with open(log, "ab") as out:
    child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
with open(pid, "w") as fh:
    fh.write(f"{child.pid}\n")
PY
    if [[ $health != "-" ]]; then
      for _ in $(seq 1 240); do
        if ! alive; then
          echo "$name exited during start-up; last lines of $log_file:" >&2
          tail -n 30 "$log_file" >&2
          rm -f "$pid_file"
          exit 1
        fi
        if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$health" 2>/dev/null; then
          echo "$name healthy at $health (pid $(cat "$pid_file"))"
          exit 0
        fi
        sleep 0.5
      done
      echo "$name not healthy after 120 s; see $log_file" >&2
      exit 1
    fi
    echo "$name started (pid $(cat "$pid_file"))"
    ;;
  stop)
    if ! alive; then
      rm -f "$pid_file"
      echo "$name not running"
      exit 0
    fi
    pid=$(cat "$pid_file")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pid_file"
    echo "$name stopped (pid $pid)"
    ;;
  *) usage ;;
esac
