"""A gunicorn threaded worker whose client sockets have a read and write deadline.

gunicorn's ``gthread`` worker waits for a request's first bytes on its poller, but once a
client has sent its headers, the thread that took the request reads the body with a blocking
socket and no timeout. A client that sends headers and one byte of body holds that thread until
it goes away; a few such clients hold every thread, and with ``sync`` workers they stall the
worker until gunicorn's timeout kills it. Here every blocking read or write on a client socket
gives up after ``client_timeout_s``: the request fails with a 408 (``shared.web``) or the
connection is dropped, and the thread serves the next client.

A buffering proxy in front (nginx, which ``taxi-mlops stack`` runs) absorbs slow clients too;
this keeps a service that users run on its own alive without one.

A keep-alive connection also stays with the worker that accepted it, and when a few clients
(a proxy's upstream pool, a load generator) connect at once, one worker may accept them all
while the others idle: measured with wrk's 8 connections on 2 workers, 1 round in 20 ran on
one worker at a third of the throughput, and on average the two workers' CPU differed by 13 %.
So, as nginx's ``keepalive_requests`` does, a connection is closed (``Connection: close``) after
``requests_per_connection`` requests; its client reconnects, and the worker that accepts first,
usually an idle one, takes it. With 100: no such round in 20, the workers within 3 % of each
other on average, and the same median throughput (benchmarks/serving.py).
"""

from __future__ import annotations

import socket
from concurrent import futures
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

DEFAULT_CLIENT_TIMEOUT_S = 10.0
#: requests a keep-alive connection serves before it is closed (0: no limit)
DEFAULT_REQUESTS_PER_CONNECTION = 100


class _DeadlineSocket(socket.socket):
    """A client socket whose blocking mode has a timeout (``socket.setblocking(True)`` would
    clear it, and gunicorn switches modes between its poller and its threads)."""

    __slots__ = ()
    timeout_s = DEFAULT_CLIENT_TIMEOUT_S

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.timeout_s)
        else:
            super().setblocking(False)


def _one_openmp_thread() -> None:
    # OpenMP's thread count is per calling thread: each request thread limits its own, or
    # HistGradientBoosting's predict would spin every core for one row (~2.5x slower)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def bounded_thread_worker(
    client_timeout_s: float, requests_per_connection: int = DEFAULT_REQUESTS_PER_CONNECTION
) -> type[ThreadWorker]:
    """A ``gthread`` worker class whose client reads and writes time out, and whose
    keep-alive connections close after ``requests_per_connection`` requests (0: never)."""
    deadline_socket = type(
        "DeadlineSocket", (_DeadlineSocket,), {"__slots__": (), "timeout_s": client_timeout_s}
    )

    class BoundedThreadWorker(ThreadWorker):
        def get_thread_pool(self) -> futures.ThreadPoolExecutor:
            return futures.ThreadPoolExecutor(
                max_workers=self.cfg.threads, initializer=_one_openmp_thread
            )

        def enqueue_req(self, conn: Any) -> None:
            if type(conn.sock) is socket.socket:
                # same memory layout (no new slots), so the class can be swapped in place
                conn.sock.__class__ = deadline_socket
            super().enqueue_req(conn)

        def handle_request(self, req: Any, conn: Any) -> bool:
            if 0 < requests_per_connection <= req.req_number:
                req.must_close = True  # answered with "Connection: close", then closed
            return bool(super().handle_request(req, conn))

    return BoundedThreadWorker
