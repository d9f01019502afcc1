"""shared/forked.py: a function run in a forked child returns its result, or its failure."""

from __future__ import annotations

import os
import sys

import pytest

from shared.forked import ForkedError, call_in_fork

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")


def _pid_and_sum(a: int, b: int) -> tuple[int, int]:
    return os.getpid(), a + b


def _refuse(name: str) -> None:
    raise ValueError(f"{name}: no such model")


def _die() -> None:
    os._exit(3)


def test_the_result_comes_back_from_another_process() -> None:
    pid, total = call_in_fork(_pid_and_sum, 2, 3)
    assert total == 5 and pid != os.getpid()


def test_an_exception_in_the_child_is_raised_here_with_its_message() -> None:
    with pytest.raises(ForkedError, match=r"ValueError: taxi: no such model"):
        call_in_fork(_refuse, "taxi")


def test_a_child_that_dies_without_answering_is_an_error_not_a_hang() -> None:
    with pytest.raises(ForkedError, match="died \\(exit code 3\\)"):
        call_in_fork(_die)


def test_what_the_child_changes_stays_in_the_child() -> None:
    os.environ.pop("TAXI_FORKED_PROBE", None)
    call_in_fork(os.environ.__setitem__, "TAXI_FORKED_PROBE", "1")
    assert "TAXI_FORKED_PROBE" not in os.environ
