"""A response's headers leave with its body, in one write: a worker killed between gunicorn's
two writes would leave a load balancer with headers it cannot retry (shared/whole_response.py)."""

from __future__ import annotations

from types import SimpleNamespace

from gunicorn.config import Config

from shared.whole_response import WholeResponse


class Socket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def response(method: str = "POST") -> tuple[WholeResponse, Socket]:
    sock = Socket()
    req = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    return WholeResponse(req, sock, Config()), sock


def test_headers_and_body_are_one_write() -> None:
    resp, sock = response()
    body = b'{"duration": 12.3}'
    resp.start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    resp.write(body)
    resp.close()
    assert len(sock.writes) == 1
    head, sent = sock.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 18" in head
    assert sent == body


def test_a_response_without_body_still_sends_its_headers() -> None:
    resp, sock = response("HEAD")
    resp.start_response("204 No Content", [])
    resp.close()
    assert len(sock.writes) == 1 and sock.writes[0].startswith(b"HTTP/1.1 204 No Content")


def test_a_longer_body_sends_headers_with_its_first_chunk_only() -> None:
    resp, sock = response()
    resp.start_response("200 OK", [("Content-Length", "6")])
    resp.write(b"abc")
    resp.write(b"def")
    resp.close()
    assert [w.endswith(b"abc") for w in sock.writes] == [True, False]
    assert sock.writes[1] == b"def"
