"""The CPU time a load costs a request: the server's (a process and every process under it,
read from /proc) and the load generator's (wrk, a child of this process, counted when it is
reaped). Under load on a shared machine, a service's requests per second say how much work it
does only together with these: the ceiling and a service can both keep the cores busy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float | None:
    """User and system CPU seconds of ``pid`` and the processes under it that are alive now;
    None where /proc does not list children (a kernel without CONFIG_PROC_CHILDREN)."""
    if not Path(f"/proc/{pid}/task/{pid}/children").exists():
        return None
    total, todo, seen = 0.0, [pid], set()
    while todo:
        process = todo.pop()
        if process in seen:
            continue
        seen.add(process)
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{process}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # it exited meanwhile
            continue
    return total


def _reaped_children_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


@dataclass
class CpuSpent:
    """Seconds of CPU between entering and leaving :func:`cpu_spent` (server None when it
    could not be read)."""

    server_s: float | None = None
    client_s: float = 0.0

    def per_request_us(self, requests: int) -> dict[str, float | None]:
        if requests <= 0:
            return {"server_cpu_us": None, "client_cpu_us": None}
        server = None if self.server_s is None else self.server_s / requests * 1e6
        return {"server_cpu_us": server, "client_cpu_us": self.client_s / requests * 1e6}


@contextmanager
def cpu_spent(pid: int) -> Iterator[CpuSpent]:
    """The CPU the server under ``pid`` and the children this process reaps meanwhile (the load
    generator) spend inside the block."""
    spent = CpuSpent()
    server, client = tree_cpu_s(pid), _reaped_children_s()
    yield spent
    after = tree_cpu_s(pid)
    if server is not None and after is not None:
        spent.server_s = after - server
    spent.client_s = _reaped_children_s() - client
