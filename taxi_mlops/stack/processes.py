"""The stack's long-running processes: started detached (own session, log file, PID file),
found again by their PID file from any later command, stopped by process group.

Every process carries ``TAXI_MLOPS_STACK=<stack folder>`` in its environment (children inherit
it, whatever session they move to: PostgreSQL's backends call setsid), so `stack down` can
prove that nothing of a stack is left, and name what was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

MARKER = "TAXI_MLOPS_STACK"

#: Popen objects of children started by this process: kept so Python does not warn that a
#: child is "still running" when they are collected (a stack service outlives `stack up`).
_STARTED: list[subprocess.Popen[bytes]] = []


def start_detached(
    command: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    pid_path: Path,
    cwd: Path | None = None,
) -> int:
    """Start ``command`` in a new session, output appended to ``log_path``; returns its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own, fully specified command lines
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    _STARTED.append(process)
    pid_path.write_text(f"{process.pid}\n")
    return process.pid


def read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int | None) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    if pid is None:
        return False
    for process in _STARTED:  # reap our own children so they do not linger as zombies
        if process.pid == pid:
            process.poll()
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and alive(int(entry.name)):
                members.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return members


def stop_group(pid: int, *, timeout_s: float = 20.0) -> str:
    """SIGTERM the process group ``pid`` leads; SIGKILL what is left after ``timeout_s``.
    Returns how it ended: "stopped", "killed" or "not running"."""
    if not alive(pid) and not group_members(pid):
        return "not running"
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid) and not group_members(pid):
            return "stopped"
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (alive(pid) or group_members(pid)):
        time.sleep(0.1)
    return "killed"


def marked_processes(stack_id: str) -> list[int]:
    """Every live process started for the stack ``stack_id`` (by its environment marker)."""
    needle = f"{MARKER}={stack_id}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if needle in environ + b"\0" and alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
