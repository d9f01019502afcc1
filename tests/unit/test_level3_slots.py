"""The models a serving process holds, kept in step with the deployment state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from level3_deployment import state as st
from level3_deployment.slots import SlotManager


class Constant:
    """A model that predicts its version (minutes) for every ride."""

    def __init__(self, version: int) -> None:
        self.version = version

    def predict(self, rides: dict) -> list[float]:
        return [float(self.version)] * len(rides["trip_distance"])


def change(store: st.StateStore, step: Callable[[st.DeploymentState], st.DeploymentState]) -> None:
    current = store.current()
    store.write(step(current), current.generation)


def promoted(tmp_path: Path) -> st.StateStore:
    """A state store after v1 booted and v2 was deployed and promoted: v1 is the standby."""
    store = st.StateStore(tmp_path / "deployment.db")
    change(store, lambda s: st.start(s, 1, "boot", "test"))
    change(store, lambda s: st.deploy(s, 2, 10.0, st.Mode.AB, "new month", "test"))
    change(store, lambda s: st.promote(s, "better", "test"))
    return store


def test_a_rollback_after_a_promotion_swaps_in_the_blue_it_kept(tmp_path: Path) -> None:
    store = st.StateStore(tmp_path / "deployment.db")
    loads: list[int] = []
    slots = SlotManager(
        store, lambda v: loads.append(v) or Constant(v), poll_s=60, compile_models=False
    )
    change(store, lambda s: st.start(s, 1, "boot", "test"))
    slots.refresh()
    change(store, lambda s: st.deploy(s, 2, 10.0, st.Mode.AB, "new month", "test"))
    slots.refresh()
    change(store, lambda s: st.promote(s, "better", "test"))
    assert set(slots.refresh().models) == {2}  # v1 is kept, but gets no traffic
    change(store, lambda s: st.rollback(s, "drill", "test"))
    active = slots.refresh()
    assert (active.state.blue, active.state.green) == (1, 2)
    assert active.model(1).one({"trip_distance": 1.0}) == 1.0  # type: ignore[union-attr]
    assert loads == [1, 2]  # the rollback loaded nothing

    # a rollback clears the kept blue: the next change drops what the state no longer names
    change(store, lambda s: st.deploy(s, 3, 10.0, st.Mode.AB, "another", "test"))
    slots.refresh()
    change(store, lambda s: st.deploy(s, 2, 10.0, st.Mode.AB, "v2 again", "test"))
    slots.refresh()
    assert loads == [1, 2, 3, 2]


def test_a_standby_that_failed_to_load_is_tried_again_later_not_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import level3_deployment.slots as slots_module

    store = promoted(tmp_path)  # blue v2, v1 the standby
    attempts: list[int] = []
    failing = {1}

    def load(version: int) -> Constant:
        attempts.append(version)
        if version in failing:
            raise OSError("registry unreachable")
        return Constant(version)

    now = [1000.0]
    monkeypatch.setattr(slots_module, "monotonic", lambda: now[0])
    # a worker started after the promotion: it loads blue (v2), then the standby (v1)
    slots = SlotManager(store, load, poll_s=60, compile_models=False, standby_retry_s=30)
    slots.refresh()
    for _ in range(3):  # three polls within the retry interval: one attempt
        slots.hold_standby()
        now[0] += 5
    assert (attempts, slots.standby()) == ([2, 1], (1, False))
    failing.clear()
    now[0] += 30
    slots.hold_standby()
    slots.hold_standby()
    assert (attempts, slots.standby()) == ([2, 1, 1], (1, True))


def test_a_blue_that_failed_to_load_is_tried_again_with_a_growing_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that booted while the registry was down gets its blue once the registry is
    back, without waiting for a deployment change."""
    import level3_deployment.slots as slots_module

    store = st.StateStore(tmp_path / "deployment.db")
    change(store, lambda s: st.start(s, 1, "boot", "test"))
    attempts: list[float] = []
    now = [1000.0]
    monkeypatch.setattr(slots_module, "monotonic", lambda: now[0])

    def load(version: int) -> Constant:
        attempts.append(now[0] - 1000.0)
        if now[0] < 1020.0:
            raise OSError("registry unreachable")
        return Constant(version)

    slots = SlotManager(
        store, load, poll_s=1, compile_models=False, load_retry_s=5, standby_retry_s=60
    )
    for _ in range(40):  # a poll a second
        active = slots.refresh()
        now[0] += 1
    # tried at boot, then 5, 10 and 20 s after each failure: loaded at the last try
    assert attempts == [0.0, 5.0, 15.0, 35.0]
    assert active.model(1) is not None and active.errors == {}
    for _ in range(100):  # loaded: the unchanged state is not read again
        slots.refresh()
        now[0] += 1
    assert len(attempts) == 4


def test_a_rollback_during_the_standby_load_waits_for_it_and_does_not_load_again(
    tmp_path: Path,
) -> None:
    store = promoted(tmp_path)  # blue v2, v1 the standby
    loads: list[int] = []
    standby_started, release = threading.Event(), threading.Event()

    def load(version: int) -> Constant:
        loads.append(version)
        if version == 1:  # the standby: the poller is still loading it when the rollback comes
            standby_started.set()
            assert release.wait(10)
        return Constant(version)

    # a worker started after the promotion: blue (v2), then the standby (v1) in the background
    slots = SlotManager(store, load, poll_s=60, compile_models=False)
    slots.refresh()
    poller = threading.Thread(target=slots.hold_standby)
    poller.start()
    assert standby_started.wait(10)
    change(store, lambda s: st.rollback(s, "drill", "test"))
    admin = threading.Thread(target=slots.refresh)  # the rollback call's refresh
    admin.start()
    admin.join(0.2)
    assert admin.is_alive()  # it needs v1, which is being loaded: it waits for that load
    release.set()
    poller.join(10)
    admin.join(10)
    active = slots.active
    assert (active.state.blue, sorted(active.models), active.errors) == (1, [1, 2], {})
    assert loads == [2, 1]  # v1 loaded once, by the poller


def test_when_the_load_being_waited_for_fails_the_waiter_loads_the_version_itself(
    tmp_path: Path,
) -> None:
    store = st.StateStore(tmp_path / "deployment.db")
    loads: list[int] = []
    first_started, release = threading.Event(), threading.Event()

    def load(version: int) -> Constant:
        loads.append(version)
        if len(loads) == 1:
            first_started.set()
            assert release.wait(10)
            raise OSError("registry unreachable")
        return Constant(version)

    slots = SlotManager(store, load, poll_s=60, compile_models=False)
    failures: list[BaseException] = []

    def first() -> None:
        try:
            slots.prepare(7)
        except OSError as exc:
            failures.append(exc)

    loader = threading.Thread(target=first)
    loader.start()
    assert first_started.wait(10)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(slots.prepare(7)))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    release.set()
    loader.join(10)
    waiter.join(10)
    assert len(failures) == 1 and len(got) == 1
    assert loads == [7, 7]  # the failed load, then the waiter's own


def test_the_poller_logs_an_outage_when_it_starts_and_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a line every poll_s for as long as the database is down."""
    from shared.statedb.database import StateUnavailable

    store = st.StateStore(tmp_path / "deployment.db")
    change(store, lambda s: st.start(s, 1, "boot", "test"))
    reads = [0]
    generation = store.generation

    def flaky_generation() -> int:
        reads[0] += 1
        if 2 <= reads[0] <= 6:
            raise StateUnavailable("the state database is unavailable: refused")
        return generation()

    store.generation = flaky_generation  # type: ignore[method-assign]
    slots = SlotManager(store, Constant, poll_s=0.01, compile_models=False)
    caplog.set_level("WARNING", logger="level3_deployment.slots")
    slots.ensure_polling()
    deadline = time.monotonic() + 10
    while reads[0] < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    slots.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "level3_deployment.slots"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("deployment state unreadable (the state database is unavailable")
    assert lines[1].startswith("deployment state readable again after ")
    assert slots.active.model(1) is not None
