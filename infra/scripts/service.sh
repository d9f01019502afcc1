#!/usr/bin/env bash
# Start or stop one long-running process for Terraform's local environment.
#
#   service.sh start NAME RUN_DIR HEALTH_URL -- COMMAND [ARGS...]
#   service.sh stop NAME RUN_DIR
#
# start: runs COMMAND in its own session (setsid) with output in RUN_DIR/NAME.log, records its
# PID and start time in RUN_DIR/NAME.pid, and waits until HEALTH_URL answers (or "-" for no
# check).
# stop: SIGTERM to the whole process group, SIGKILL after 15 s; no PID file = nothing to do.
#
# A PID file outlives its process (a reboot, a kill -9 of the group) and the PID may then belong
# to someone else: the process is ours only if it still has the start time recorded with it.
# Anything else is a stale file, removed without signalling anybody.
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

# A process's start time: clock ticks since boot from /proc (field 22 of its stat line, read
# after the command name, which may hold spaces), else what ps says.
started() {
  local stat
  if [[ -r /proc/$1/stat ]]; then
    stat=$(</proc/"$1"/stat) || return 1
    read -ra fields <<<"${stat##*) }"
    echo "${fields[19]}"
  else
    ps -o lstart= -p "$1" 2>/dev/null
  fi
}

recorded_pid() { sed -n 1p "$pid_file"; }

# the process in the PID file is running and is the one we started
alive() {
  [[ -f $pid_file ]] || return 1
  local pid identity now
  pid=$(recorded_pid)
  identity=$(sed -n 2p "$pid_file")
  [[ $pid =~ ^[0-9]+$ && -n $identity ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  now=$(started "$pid") || return 1
  [[ $now == "$identity" ]]
}

stale() {
  if [[ -f $pid_file ]]; then
    echo "$name: $pid_file names pid $(recorded_pid), which is not the process started here; removing it" >&2
    rm -f "$pid_file"
  fi
}

case $action in
  start)
    [[ $# -ge 6 && $5 == "--" ]] || usage
    health=$4
    shift 5
    if alive; then
      echo "$name already running (pid $(recorded_pid))"
      exit 0
    fi
    stale
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
    identity=$(started "$(recorded_pid)") || identity=""
    printf '%s\n%s\n' "$(recorded_pid)" "$identity" >"$pid_file"
    if [[ $health != "-" ]]; then
      for _ in $(seq 1 240); do
        if ! alive; then
          echo "$name exited during start-up; last lines of $log_file:" >&2
          tail -n 30 "$log_file" >&2
          rm -f "$pid_file"
          exit 1
        fi
        if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$health" 2>/dev/null; then
          echo "$name healthy at $health (pid $(recorded_pid))"
          exit 0
        fi
        sleep 0.5
      done
      echo "$name not healthy after 120 s; see $log_file" >&2
      exit 1
    fi
    echo "$name started (pid $(recorded_pid))"
    ;;
  stop)
    if ! alive; then
      stale
      echo "$name not running"
      exit 0
    fi
    pid=$(recorded_pid)
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
