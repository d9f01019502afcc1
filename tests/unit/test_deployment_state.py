from __future__ import annotations

from pathlib import Path

import pytest

from level3_deployment import state as st
from level3_deployment.routing import Mode


def test_the_deployment_lifecycle() -> None:
    s = st.start(st.DeploymentState(), blue=1, reason="boot", actor="t")
    s = st.deploy(s, 2, 10, Mode.AB, "canary", "t")
    assert (s.blue, s.green, s.policy.green_buckets) == (1, 2, 1000)
    s = st.set_split(s, 50, Mode.AB, "more", "t")
    assert s.policy.green_buckets == 5000
    s = st.promote(s, "better", "t")
    assert (s.blue, s.green, s.previous_blue, s.policy.green_buckets) == (2, None, 1, 0)
    s = st.rollback(s, "oops", "t")
    assert (s.blue, s.green, s.previous_blue, s.mode) == (1, 2, None, Mode.OFF)


def test_rollback_before_promotion_only_stops_green_traffic() -> None:
    s = st.deploy(st.start(st.DeploymentState(), 1, "boot", "t"), 2, 30, Mode.AB, "c", "t")
    s = st.rollback(s, "bad canary", "t")
    assert (s.blue, s.green, s.green_percent, s.mode) == (1, 2, 0.0, Mode.OFF)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda s: st.deploy(s, 1, 10, Mode.AB, "", ""), "already blue"),
        (lambda s: st.set_split(s, 10, Mode.AB, "", ""), "deploy one first"),
        (lambda s: st.promote(s, "", ""), "no green model"),
        (lambda s: st.rollback(s, "", ""), "nothing to roll back"),
        (lambda s: st.deploy(s, 2, 120, Mode.AB, "", ""), "expected 0..100"),
    ],
)
def test_impossible_steps_are_refused(step, message: str) -> None:
    s = st.start(st.DeploymentState(), 1, "boot", "t")
    with pytest.raises((ValueError, st.ConflictError), match=message):
        step(s)


def test_store_keeps_every_generation_and_refuses_a_stale_write(tmp_path: Path) -> None:
    store = st.StateStore(tmp_path / "d.db")
    assert store.current() == st.DeploymentState() and store.generation() == 0
    first = store.write(st.start(store.current(), 1, "boot", "t"), 0)
    second = store.write(st.deploy(first, 2, 10, Mode.AB, "canary", "t"), first.generation)
    assert store.current() == second and store.generation() == 2
    with pytest.raises(st.ConflictError, match="the deployment changed"):
        store.write(st.set_split(second, 50, Mode.AB, "late", "t"), first.generation)
    assert [s.reason for s in st.StateStore(tmp_path / "d.db").history()] == ["boot", "canary"]


def test_deploy_needs_a_blue() -> None:
    with pytest.raises(st.ConflictError, match="no blue model"):
        st.deploy(st.DeploymentState(), 2, 10, Mode.AB, "", "")
