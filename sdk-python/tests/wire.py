"""A plain-socket client for the tests, with the length-line framing written out by hand.

Deliberately independent of the SDK: the tests check the Rust core's framing from the outside.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Self

Address = tuple[str, int]


def frame(payload: bytes) -> bytes:
    """One frame: the length right-aligned in ten columns, CRLF, then the payload."""
    return b"%10d\r\n" % len(payload) + payload


def envelope(method: str, data: Any = None, **head: Any) -> bytes:
    return json.dumps({"head": {"method": method, **head}, "data": data}).encode()


class Connection:
    """One TCP connection to a backend; many calls may share it (keep-alive)."""

    def __init__(self, addr: Address, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, method: str, data: Any = None, **head: Any) -> Any:
        """Sends one request and returns the decoded reply."""
        self.send_raw(frame(envelope(method, data, **head)))
        reply = self.read_frame()
        assert reply is not None, "the backend closed the connection instead of replying"
        return json.loads(reply)

    def read_frame(self) -> bytes | None:
        """The next payload, or None if the backend closed the connection between frames."""
        line = self._read_exactly(12)
        if line is None:
            return None
        assert line.endswith(b"\r\n"), line
        payload = self._read_exactly(int(line[:10]))
        assert payload is not None, "the backend closed the connection inside a frame"
        return payload

    def read_all(self) -> list[bytes]:
        """Every payload until the backend closes the connection."""
        frames = []
        while (payload := self.read_frame()) is not None:
            frames.append(payload)
        return frames

    def _read_exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                assert not data, f"the connection ended {len(data)} bytes into {n}"
                return None
            data += chunk
        return data


def call(addr: Address, method: str, data: Any = None, **head: Any) -> Any:
    """One request on a fresh connection."""
    with Connection(addr) as conn:
        return conn.call(method, data, **head)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(addr: Address, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
