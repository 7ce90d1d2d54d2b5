"""The pieces the hostile-client tests are built from, all real: the ``modproxy`` binary on a free
port with a temporary HOME, a socket-protocol backend and a WebSocket echo upstream written here,
the proxy's resident memory read from ``/proc``, a well-behaved client that counts every answer, and
HTTP/2 over the ``h2`` package on a plain socket.

Nothing here sleeps for a fixed time where it can wait for a condition with a deadline instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
KIB = 1024


# ---- the proxy -----------------------------------------------------------------------------------


def proxy_binary() -> Path:
    """``$MODPROXY_BIN`` if set, else the debug build (``$CARGO_TARGET_DIR`` honoured)."""
    if "MODPROXY_BIN" in os.environ:
        return Path(os.environ["MODPROXY_BIN"])
    return (
        Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")).resolve() / "debug" / "modproxy"
    )


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """The sockets of ``socks`` with something to read (data, the end of the stream or an error)
    within ``timeout`` seconds; ``poll``, since a thousand connections take descriptors past
    ``select``'s."""
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0.0, timeout) * 1000)]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Returns once ``condition()`` holds; raises ``AssertionError`` naming ``what`` at the
    deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


class Proxy:
    """The real ``modproxy`` on ``127.0.0.1:<port>`` with a temporary HOME holding the repository's
    ``html/`` and a config of ``[server]`` lines plus more sections; stopped by :meth:`stop`."""

    def __init__(self, home: Path, server: str = "", rest: str = "") -> None:
        self.home = home
        self.port = free_port()
        shutil.copytree(REPO / "html", home / "html")
        (home / "conf").mkdir(parents=True)
        (home / "conf" / "default.toml").write_text(
            f'[server]\nport = {self.port}\nlisten = "127.0.0.1"\n{server}\n\n{rest}\n'
        )
        binary = proxy_binary()
        if not binary.is_file():
            raise AssertionError(f"no modproxy binary at {binary}: run `cargo build -p modproxy`")
        self.process = subprocess.Popen(
            [str(binary), "--home", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"modproxy exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"modproxy is not listening:\n{self.log()}") from None
                time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        path = self.home / "logs" / "modproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _status_kib(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {name} in /proc/{self.pid}/status")

    def rss_kib(self) -> int:
        """Resident memory now (``VmRSS``)."""
        return self._status_kib("VmRSS")

    def peak_kib(self) -> int:
        """Highest resident memory since the start (``VmHWM``): no peak between two samples is
        missed."""
        return self._status_kib("VmHWM")

    def settle(self, target_kib: int, timeout: float) -> int:
        """Waits up to ``timeout`` for RSS to come down to ``target_kib`` and returns the last
        reading. The proxy's allocator (mimalloc) returns freed memory about once a second, and a
        loaded machine may take a few rounds: hence a deadline, not a fixed sleep."""
        deadline = time.monotonic() + timeout
        now = self.rss_kib()
        while now > target_kib and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.rss_kib()
        return now

    def held_client_ports(self) -> set[int]:
        """The client ports of the TCP connections to the proxy's port that the proxy still holds:
        the socket (found in ``/proc/PID/net/tcp`` by its two ports) is among its descriptors. Tells
        a connection the proxy closed from one it keeps, without the client reading anything."""
        by_inode: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == self.port and fields[9] != "0":
                by_inode[f"socket:[{fields[9]}]"] = int(fields[2].split(":")[1], 16)
        held = set()
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                port = by_inode.get(os.readlink(fd))
                if port is not None:
                    held.add(port)
        return held

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def socket_module(name: str, node: str, extra: str = "") -> str:
    """A ``[module]`` section with one ``module_socket`` entry."""
    more = f", {extra}" if extra else ""
    return f'[module]\nmodule_socket = [ {{ module = "{name}", forward_pass = "{node}"{more} }} ]\n'


def http_module(name: str, url: str, extra: str = "") -> str:
    """A ``[module]`` section with one ``module_http`` entry."""
    more = f", {extra}" if extra else ""
    return f'[module]\nmodule_http = [ {{ module = "{name}", proxy_pass = "{url}"{more} }} ]\n'


def envelope(method: str, data: object) -> bytes:
    """A socket module's request body: ``{"head": {"method": …}, "data": …}``."""
    return json.dumps({"head": {"method": method}, "data": data}, separators=(",", ":")).encode()


# ---- a socket-protocol backend -------------------------------------------------------------------


class FrameBackend:
    """A socket-protocol backend: reads each frame (a 12-byte length line, the payload length
    right-aligned in ten columns then CRLF, and the payload), drains the payload without keeping it,
    and answers a short JSON frame. Any number of connections, each on its own thread, kept alive.
    """

    REPLY = b'{"ok":true}'

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_exact(conn: socket.socket, n: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < n:
            got = conn.recv(n - len(chunks))
            if not got:
                return None
            chunks += got
        return bytes(chunks)

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray(1 << 20)
        reply = f"{len(self.REPLY):>10}\r\n".encode() + self.REPLY
        with conn:
            try:
                while True:
                    line = self._read_exact(conn, 12)
                    if line is None or line[10:] != b"\r\n":
                        return
                    left = int(line[:10])
                    while left > 0:
                        got = conn.recv_into(buf, min(left, len(buf)))
                        if got == 0:
                            return
                        left -= got
                    with self._lock:
                        self.requests += 1
                    conn.sendall(reply)
            except OSError:
                return

    def close(self) -> None:
        self._closing = True
        self.listener.close()


# ---- a WebSocket echo upstream -------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    """One final WebSocket frame; a client's is masked (RFC 6455, 5.3)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def ws_read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Reads one WebSocket frame; returns its opcode and unmasked payload."""
    first, second = await reader.readexactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if second & 0x80 else b""
    payload = await reader.readexactly(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


class WebSocketEcho:
    """An HTTP upstream that accepts every WebSocket upgrade and echoes text and binary messages;
    asyncio on a thread of its own, so a thousand connections cost a thousand sockets, not threads.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.open = 0
        ready = threading.Event()
        self._server: asyncio.Server | None = None

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=2048)
            ready.set()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self.loop)
        if not ready.wait(10):
            raise AssertionError("the WebSocket upstream did not start")
        assert self._server is not None
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n".encode()
            )
            while True:
                opcode, payload = await ws_read_frame(reader)
                if opcode == 0x8:
                    writer.write(ws_frame(0x8, payload, mask=False))
                    break
                if opcode in (0x1, 0x2):
                    writer.write(ws_frame(opcode, payload, mask=False))
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


# ---- the well-behaved client ---------------------------------------------------------------------


class Http1Caller:
    """One request at a time on one kept-alive HTTP/1.1 connection (``http.client``); after an error
    the next call opens a new connection. Returns the status; raises on anything else."""

    def __init__(self, port: int, method: str, path: str, body: bytes | None = None) -> None:
        self.port, self.method, self.path, self.body = port, method, path, body
        self.conn: http.client.HTTPConnection | None = None

    def __call__(self, timeout: float) -> int:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if self.body is not None else {}
            self.conn.request(self.method, self.path, body=self.body, headers=headers)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self.close()
            return response.status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class H2Caller:
    """One request at a time on one HTTP/2 connection (``h2``); after an error the next call opens a
    new connection."""

    def __init__(self, port: int, method: str, path: str, body: bytes = b"") -> None:
        self.port, self.method, self.path, self.body = port, method, path, body
        self.client: H2Client | None = None

    def __call__(self, timeout: float) -> int:
        if self.client is None:
            self.client = H2Client(self.port, timeout)
        try:
            (outcome,) = self.client.exchange(
                [(self.method, self.path, self.body)], time.monotonic() + timeout
            )
        except BaseException:
            self.close()
            raise
        if outcome.status is None or not outcome.ended:
            self.close()
            raise AssertionError(f"no whole answer: {outcome}")
        return outcome.status

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class SteadyClient:
    """A well-behaved client on a thread of its own: one request every ``interval`` seconds, each
    given ``timeout`` to be answered. Every answer is counted; anything but ``expect`` (another
    status, an error, a timeout) is a failure, kept with what happened and when."""

    def __init__(
        self,
        call: Callable[[float], int],
        expect: int = 200,
        interval: float = 0.02,
        timeout: float = 15.0,
    ) -> None:
        self.call, self.expect, self.interval, self.timeout = call, expect, interval, timeout
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SteadyClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            at = time.monotonic() - started
            try:
                status = self.call(self.timeout)
            except Exception as error:  # every kind of failure is recorded, none ends the client
                self.failures.append(f"{at:.2f}s: {type(error).__name__}: {error}")
            else:
                if status == self.expect:
                    self.answered += 1
                else:
                    self.failures.append(f"{at:.2f}s: status {status}")
            self._stop.wait(self.interval)

    def wait_answered(self, count: int, timeout: float = 20) -> None:
        wait_for(lambda: self.answered >= count, timeout, f"{count} answers to the steady client")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.timeout + 5)
        close = getattr(self.call, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def steady(client: SteadyClient) -> Iterator[SteadyClient]:
    """Runs ``client`` for the block; stops it on the way out, also when the block fails."""
    client.start()
    try:
        yield client
    finally:
        client.stop()


# ---- HTTP/2 with h2 ------------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    """What became of one HTTP/2 request: its status, whether the response ended, a reset's code."""

    stream_id: int
    status: int | None = None
    ended: bool = False
    reset: int | None = None
    body_bytes: int = 0

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    """An HTTP/2 client connection (prior knowledge, cleartext) over a blocking socket, driven by
    the ``h2`` state machine. :meth:`exchange` sends requests concurrently on their own streams,
    their bodies interleaved frame by frame as flow control allows, and collects the answers."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.terminated: h2.events.ConnectionTerminated | None = None
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def _headers(self, method: str, path: str, length: int | None) -> list[tuple[str, str]]:
        headers = [
            (":method", method),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{self.port}"),
            (":path", path),
        ]
        if length is not None:
            headers += [("content-type", "application/json"), ("content-length", str(length))]
        return headers

    def exchange(
        self, requests: list[tuple[str, str, bytes]], deadline: float
    ) -> list[StreamOutcome]:
        """Sends ``(method, path, body)`` requests at once and returns their outcomes, in order,
        once every stream is done or at ``deadline`` (then some are not ``done``)."""
        outcomes: dict[int, StreamOutcome] = {}
        bodies: dict[int, bytes] = {}
        sent: dict[int, int] = {}
        for method, path, body in requests:
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(
                sid, self._headers(method, path, len(body) if body else None), end_stream=not body
            )
            outcomes[sid] = StreamOutcome(sid)
            if body:
                bodies[sid], sent[sid] = body, 0
        # Streams with body left to send, taken in turn: a round stops where the connection's window
        # runs out and the next one starts there, so every body advances at the same pace (all of
        # them half-sent at once, the worst case for a server that buffers them).
        turn = deque(bodies)
        self._flush()
        while any(not o.done for o in outcomes.values()) and self.terminated is None:
            if time.monotonic() >= deadline:
                break
            progressed = False
            for _ in range(len(turn)):
                sid = turn[0]
                body, offset = bodies[sid], sent[sid]
                try:
                    if outcomes[sid].done:
                        raise h2.exceptions.StreamClosedError(sid)
                    n = min(
                        self.conn.local_flow_control_window(sid),
                        self.conn.max_outbound_frame_size,
                        len(body) - offset,
                    )
                    if n <= 0:
                        if self.conn.outbound_flow_control_window <= 0:
                            break
                        turn.rotate(-1)
                        continue
                    end = offset + n == len(body)
                    self.conn.send_data(sid, body[offset : offset + n], end_stream=end)
                    sent[sid] = offset + n
                    progressed = True
                    if end:
                        turn.popleft()
                    else:
                        turn.rotate(-1)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    turn.popleft()
            self._flush()
            wait = 0 if progressed else min(0.2, max(0.0, deadline - time.monotonic()))
            readable = wait_readable([self.sock], wait)
            if readable:
                self._receive(outcomes)
        return [outcomes[sid] for sid in sorted(outcomes)]

    def _receive(self, outcomes: dict[int, StreamOutcome]) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            self.terminated = self.terminated or h2.events.ConnectionTerminated()
            return
        for event in self.conn.receive_data(data):
            sid = getattr(event, "stream_id", None)
            outcome = outcomes.get(sid) if sid is not None else None
            if isinstance(event, h2.events.ResponseReceived) and outcome is not None:
                outcome.status = int(dict(event.headers)[":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if outcome is not None:
                    outcome.body_bytes += len(event.data)
            elif isinstance(event, h2.events.StreamEnded) and outcome is not None:
                outcome.ended = True
                with contextlib.suppress(h2.exceptions.H2Error):
                    # Answered before its body was all sent (a 503): stop sending it.
                    self.conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.NO_ERROR)
            elif isinstance(event, h2.events.StreamReset) and outcome is not None:
                outcome.reset = int(event.error_code)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = event
        self._flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


H2_GOAWAY = 0x7


def read_h2_frames_until_closed(
    sock: socket.socket, deadline: float
) -> tuple[list[tuple[int, bytes]], bool]:
    """Reads raw HTTP/2 frames from ``sock`` until the peer closes it or ``deadline``; returns the
    frames seen, as (type, payload), and whether the peer closed (a reset counts as closed; the
    deadline does not)."""
    buf = bytearray()
    frames: list[tuple[int, bytes]] = []
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable = wait_readable([sock], left)
        if not readable:
            break
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            frames.append((buf[3], bytes(buf[9 : 9 + length])))
            del buf[: 9 + length]
    return frames, closed


def ended_all(socks: list[socket.socket], deadline: float) -> list[tuple[bytes, float | None]]:
    """:func:`ended_within` for many sockets at once, read side by side until one ``deadline``."""
    received = {s: bytearray() for s in socks}
    ended: dict[socket.socket, float] = {}
    while len(ended) < len(socks):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for sock in wait_readable([s for s in socks if s not in ended], left):
            try:
                data = sock.recv(1 << 16)
            except ConnectionResetError:
                data = b""
            if data:
                received[sock] += data
            else:
                ended[sock] = time.monotonic()
    return [(bytes(received[s]), ended.get(s)) for s in socks]


def ended_within(sock: socket.socket, deadline: float) -> tuple[bytes, float | None]:
    """Reads ``sock`` until the peer ends it; returns what came and when it ended
    (``time.monotonic``), or ``None`` as the time if it was still open at ``deadline``: a read
    timeout is never an end."""
    received = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(received), None
        readable = wait_readable([sock], left)
        if not readable:
            return bytes(received), None
        try:
            data = sock.recv(1 << 16)
        except ConnectionResetError:
            return bytes(received), time.monotonic()
        if not data:
            return bytes(received), time.monotonic()
        received += data


# ---- WebSocket clients ---------------------------------------------------------------------------


async def ws_open(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Opens a WebSocket through the proxy with a raw upgrade (RFC 6455, 4.1) and checks the 101 and
    its ``Sec-WebSocket-Accept``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    if lines[0].split(" ")[1] != "101":
        writer.close()
        raise AssertionError(f"no upgrade: {lines[0]}")
    accept = [
        v.strip()
        for n, _, v in (h.partition(":") for h in lines[1:])
        if n.lower() == "sec-websocket-accept"
    ]
    if accept != [ws_accept(key)]:
        writer.close()
        raise AssertionError(f"bad Sec-WebSocket-Accept: {accept}")
    return reader, writer


async def ws_closed_at(reader: asyncio.StreamReader, deadline: float) -> float | None:
    """Waits for the proxy to end a WebSocket (end of stream, a reset, or a close frame); returns
    when (``time.monotonic``), or ``None`` if it was still open at ``deadline``: a timeout is never
    a close."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            while True:
                opcode, _ = await ws_read_frame(reader)
                if opcode == 0x8:
                    return time.monotonic()
    except TimeoutError:
        return None
    except (asyncio.IncompleteReadError, ConnectionError):
        return time.monotonic()
