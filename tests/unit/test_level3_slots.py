"""The models a serving process holds, kept in step with the deployment state."""

from __future__ import annotations

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

    store = st.StateStore(tmp_path / "deployment.db")
    change(store, lambda s: st.start(s, 1, "boot", "test"))
    change(store, lambda s: st.deploy(s, 2, 10.0, st.Mode.AB, "new month", "test"))
    change(store, lambda s: st.promote(s, "better", "test"))
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
