"""Run a function in a forked child process and get its result back.

A gunicorn master that forks workers must not hold what cannot cross ``fork()``: database
connections, client threads. Work that needs them before the workers start (reading the model
registry) runs in a child forked from the master instead: it inherits the modules the master
has imported (no second interpreter start, no re-import), and whatever it opens ends with it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


class ForkedError(RuntimeError):
    """The child raised, or died before it answered."""


@dataclass(frozen=True)
class _Raised:
    summary: str


#: what the parent holds when the child died before it answered
_NO_ANSWER = object()


def _answer(send: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result: Any = func(*args)
    except BaseException as exc:  # every failure goes back to the parent
        result = _Raised(f"{type(exc).__name__}: {exc}")
    send.send(result)
    send.close()


def call_in_fork(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a child forked from this process; its result must pickle.

    Only for a process with one thread (a child forked from a threaded one may inherit a lock
    some other thread held). Raises :class:`ForkedError` with the child's exception summary.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_answer, args=(send, func, args), daemon=True)
    child.start()
    send.close()  # the child holds the other end: EOF on recv when it dies without answering
    try:
        result = receive.recv()
    except EOFError:
        result = _NO_ANSWER  # the exit code, once the child is joined, says why
    finally:
        receive.close()
        child.join()
    if result is _NO_ANSWER:
        result = _Raised(f"the child process died (exit code {child.exitcode})")
    if isinstance(result, _Raised):
        raise ForkedError(result.summary)
    return result
