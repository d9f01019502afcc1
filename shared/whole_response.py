"""gunicorn responses whose headers leave with the first body bytes, in one write.

gunicorn writes a response's status line and headers with one ``sendall`` and the body with
another. A worker killed between the two (a replica SIGKILLed, an OOM kill) leaves the load
balancer with headers it has already relayed to the client: it can no longer retry the request
on another replica, and the client gets a truncated response. Holding the headers until the
first body bytes makes a small response (all of this project's JSON answers) one write: a
killed worker has then sent either nothing, which nginx retries elsewhere, or everything.

Installed in each worker (``install()``, from the gunicorn runner); needs gunicorn's
``sendfile`` off, since that path writes to the socket itself.
"""

from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi


class _Hold:
    """A stand-in socket that keeps what gunicorn would have sent."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))


class WholeResponse(wsgi.Response):
    _held: bytes | None = None
    sock: Any  # gunicorn's socket, or the stand-in while the headers are held

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        hold, sock = _Hold(), self.sock
        self.sock = hold  # gunicorn serialises the headers exactly as it would send them
        try:
            super().send_headers()
        finally:
            self.sock = sock
        self._held = b"".join(hold.parts)

    def _flush_held(self) -> bytes:
        held, self._held = self._held or b"", None
        return held

    def _emit_body(self, data: Any) -> None:
        held = self._flush_held()
        if held and not self.chunked:
            util.write(self.sock, held + bytes(data))
            return
        if held:
            util.write(self.sock, held)
        super()._emit_body(data)

    def close(self) -> None:
        self.send_headers()
        if self._held:  # no body (HEAD, 204, an empty answer): the headers alone
            util.write(self.sock, self._flush_held())
        super().close()


def install() -> None:
    wsgi.Response = WholeResponse
