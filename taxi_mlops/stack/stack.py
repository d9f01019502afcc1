"""`stack up`, `down`, `status`, `restart`: the components in dependency order.

``up`` is idempotent: a healthy component is left alone, a missing one is started (so running
it again after a crash brings back what died). On a new stack it also registers the training
deployment and, when the registry has no champion, trains a first one through the worker:
the replicas serve the champion, so they cannot start without one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.settings import Settings

from .components import (
    Component,
    MlflowServer,
    Nginx,
    ObjectStore,
    Postgres,
    PrefectServer,
    PrefectWorker,
    Replica,
    StackError,
)
from .plan import POOL, Plan, database_password, plan_from
from .processes import command_line, marked_processes, stop_group

logger = logging.getLogger(__name__)


@dataclass
class Stack:
    plan: Plan
    settings: Settings
    progress: Callable[[str], None] = field(default=lambda _: None)

    def __post_init__(self) -> None:
        self._password: str | None = None

    def password(self) -> str:
        if self._password is None:
            self._password = database_password(self.plan, self.settings)
        return self._password

    # ----------------------------------------------------------------- the components
    def infrastructure(self) -> list[Component]:
        return [
            Postgres(self.plan, self.settings.pg_bin_dir, self.password),
            ObjectStore(self.plan),
            MlflowServer(self.plan, self.password),
            PrefectServer(self.plan, self.password),
            PrefectWorker(self.plan, self.password),
        ]

    def serving(self) -> list[Component]:
        replicas = (Replica(self.plan, i, self.password) for i in range(self.plan.replicas))
        return [*replicas, Nginx(self.plan)]

    def components(self) -> list[Component]:
        return [*self.infrastructure(), *self.serving()]

    def component(self, name: str) -> Component:
        for component in self.components():
            if component.name == name:
                return component
        names = ", ".join(c.name for c in self.components())
        raise StackError(f"no stack component {name!r} (one of: {names})")

    # ----------------------------------------------------------------------------- up
    def up(self, *, seed: bool = True, seed_rows: int = 20_000) -> dict[str, Any]:
        started = time.perf_counter()
        self.plan.root.mkdir(parents=True, exist_ok=True)
        actions: dict[str, str] = {}
        for component in self.infrastructure():
            self.progress(f"{component.name}: starting")
            actions[component.name] = component.ensure()
            self.progress(f"{component.name}: {actions[component.name]}")
            if isinstance(component, PrefectServer):
                actions["deployment"] = self._register_deployment()
                self.progress(f"deployment: {actions['deployment']}")
        actions["champion"] = self._ensure_champion(seed, seed_rows)
        self.progress(f"champion: {actions['champion']}")
        if actions["champion"].startswith("none"):
            return self._summary(actions, started)
        *replicas, balancer = self.serving()
        # the replicas load their models at the same time (each takes seconds)
        begun = {r.name: r.begin() for r in replicas}
        for replica in replicas:
            if begun[replica.name]:
                replica.wait()
            actions[replica.name] = begun[replica.name] or "already running"
            self.progress(f"{replica.name}: {actions[replica.name]}")
        actions[balancer.name] = balancer.ensure()
        self.progress(f"{balancer.name}: {actions[balancer.name]}")
        return self._summary(actions, started)

    def _cli(self, *args: str, timeout_s: float = 900) -> dict[str, Any]:
        completed = subprocess.run(  # noqa: S603 - our own CLI
            [self.plan.tool("taxi-mlops"), *args],
            capture_output=True,
            text=True,
            env=self.plan.process_env("cli", self.password()),
            check=False,
            timeout=timeout_s,
        )
        try:
            answer = json.loads(completed.stdout)
        except json.JSONDecodeError:
            answer = {"ok": False, "error": completed.stderr.strip()[-1500:]}
        if completed.returncode != 0 or not answer.get("ok"):
            raise StackError(f"`taxi-mlops {' '.join(args[:2])}` failed: {answer.get('error')}")
        return answer

    def _register_deployment(self) -> str:
        answer = self._cli("level2", "deploy-flow", "--pool", POOL, "--json")
        return f"taxi-level2-training/{answer['name']} on pool {answer['pool']}"

    def _ensure_champion(self, seed: bool, rows: int) -> str:
        if not seed:
            status = self._cli("level2", "status", "--json", timeout_s=300)
            champion = status.get("aliases", {}).get("champion")
            if champion is not None:
                return f"v{champion} in the registry"
            return (
                "none: the replicas start once the registry has a champion "
                "(`taxi-mlops level2 train --on-worker`, then `stack up` again)"
            )
        answer = self._cli(*first_champion_args(rows), timeout_s=1200)
        if answer.get("skipped"):
            return f"v{answer['champion']} in the registry"
        registered = answer["registered"]
        return (
            f"v{registered['version']} trained through the worker "
            f"(flow run {answer['flow_run']['name']}, {answer['best']['family']}, "
            f"val RMSE {answer['best']['val_rmse']:.3f})"
        )

    def _summary(self, actions: dict[str, str], started: float) -> dict[str, Any]:
        env = self.plan.client_env(self.password())
        state = {
            "ok": True,
            "actions": actions,
            "env": env,
            "urls": {
                "level3": self.plan.level3_url,
                "mlflow": self.plan.mlflow_url,
                "prefect": self.plan.prefect_url,
                "s3": self.plan.s3_url,
                "postgres": f"postgresql://127.0.0.1:{self.plan.postgres_port}",
            },
            "seconds": round(time.perf_counter() - started, 1),
        }
        # it holds the state database's password: readable by its owner only
        descriptor = os.open(
            self.plan.root / "stack.env", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        with os.fdopen(descriptor, "w") as handle:
            handle.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        return state

    # --------------------------------------------------------------------------- down
    def down(self) -> dict[str, Any]:
        stopped = {}
        for component in reversed(self.components()):
            stopped[component.name] = component.stop()
            self.progress(f"{component.name}: {stopped[component.name]}")
        # Anything still carrying this stack's marker (a flow run the worker had started, a
        # process whose PID file was lost) is stopped too, and named.
        strays = {pid: command_line(pid) for pid in marked_processes(self.plan.stack_id)}
        for pid in strays:
            if _leads_group(pid):
                stop_group(pid, timeout_s=5)
            else:
                _kill(pid)
        left = marked_processes(self.plan.stack_id)
        return {
            "ok": not left,
            "stopped": stopped,
            "strays": [{"pid": p, "command": c} for p, c in strays.items()],
            "left_running": left,
        }

    # ------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        rows = [c.describe() for c in self.components()]
        return {"ok": all(r["healthy"] for r in rows), "components": rows}

    def restart(self, name: str) -> dict[str, Any]:
        component = self.component(name)
        stopped = component.stop()
        action = component.ensure()
        return {"ok": True, "component": name, "stopped": stopped, "action": action}


def first_champion_args(rows: int) -> list[str]:
    """The seed model a new stack trains through its worker, so the replicas have a champion."""
    return [
        "level2",
        "train",
        "--generated",
        "--train-months",
        "2019-01",
        "--val-month",
        "2019-02",
        "--rows",
        str(rows),
        "--models",
        "linear,hgb",
        "--trials",
        "1",
        "--on-worker",
        "--unless-champion",
        "--json",
    ]


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stack_from(settings: Settings, progress: Callable[[str], None] | None = None) -> Stack:
    return Stack(plan_from(settings), settings, progress or (lambda _: None))
