"""Hostile peers: garbage, oversized frames, half-closed connections and handlers that never return.

None of them may stop other connections from being served (issue 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from modproxy_sdk import Backend
from wire import Address, Connection, envelope, frame

MAX_FRAME = 64 * 1024


def make_app(release: threading.Event, entered: threading.Semaphore) -> Backend:
    app = Backend()

    @app.method
    def add(data):
        return data["a"] + data["b"]

    @app.method
    async def nap(data):
        await asyncio.sleep(data)
        return data

    @app.method
    async def hang(data):
        # Never returns: awaits a future nobody completes.
        entered.release()
        await asyncio.get_running_loop().create_future()

    @app.method
    def block(data):
        # A sync handler stuck on its worker thread until the test ends.
        entered.release()
        release.wait()
        return "released"

    return app


@pytest.fixture
def entered():
    return threading.Semaphore(0)


@pytest.fixture
def addr(serve, release, entered):
    return serve(make_app(release, entered), max_frame=MAX_FRAME)


def twenty_fresh_connections(addr: Address) -> float:
    """Makes 20 calls at once, each on a new connection; returns the seconds they took."""

    def one(i: int) -> int:
        with Connection(addr, timeout=5) as conn:
            return conn.call("add", {"a": i, "b": 1})

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(one, range(20))) == [i + 1 for i in range(20)]
    return time.perf_counter() - start


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the backend sends until it closes; a reset after a refusal counts as the close."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def hanging_calls(addr: Address, entered: threading.Semaphore) -> list[Connection]:
    """One call stuck in an async handler and one in a sync handler, each on its own connection."""
    stuck = []
    for method in ("hang", "block"):
        conn = Connection(addr, timeout=30)
        conn.send_raw(frame(envelope(method)))
        stuck.append(conn)
        assert entered.acquire(timeout=10), f"{method} was never called"
    # asyncio holds tasks only weakly: a collection now ends a hung task that the SDK did not hold.
    gc.collect()
    return stuck


def test_a_half_closed_connection_still_gets_every_reply(addr):
    with Connection(addr) as conn:
        conn.send_raw(frame(envelope("nap", 0.1)) + frame(envelope("add", {"a": 2, "b": 3})))
        # The client is done sending: it shuts down its write side, then waits for the replies.
        conn.sock.shutdown(socket.SHUT_WR)
        assert [json.loads(reply) for reply in conn.read_all()] == [0.1, 5]


def test_a_frame_cut_short_by_a_half_close_gets_a_bad_request_reply(addr):
    with Connection(addr) as conn:
        conn.send_raw(b"        50\r\n" + b'{"head":')
        conn.sock.shutdown(socket.SHUT_WR)
        replies = conn.read_all()
        assert len(replies) == 1
        assert json.loads(replies[0])["error"]["code"] == "bad_request"


def test_handlers_that_never_return_do_not_stop_twenty_other_connections(addr, entered):
    stuck = hanging_calls(addr, entered)
    try:
        elapsed = twenty_fresh_connections(addr)
        print(f"\n20 connections beside two hung handlers took {elapsed:.3f} s")
        assert elapsed < 3.0
        for conn in stuck:
            conn.sock.settimeout(0.05)
            with pytest.raises(TimeoutError):
                conn.sock.recv(1)
    finally:
        for conn in stuck:
            conn.close()


def test_garbage_oversized_and_half_closed_peers_do_not_disturb_others(addr, entered):
    stuck = hanging_calls(addr, entered)
    try:
        # Binary garbage: a bad_request reply, then the backend closes.
        with Connection(addr) as garbage:
            garbage.send_raw(random.Random(9).randbytes(4096))
            reply = json.loads(garbage.read_frame() or b"null")
            assert reply["error"]["code"] == "bad_request"
            assert garbage.read_frame() is None

        # An oversized frame whose megabyte of payload really follows: refused on its length line.
        # The reply may be lost to the reset that closing over unread bytes causes.
        with Connection(addr) as oversized:
            megabyte = b"   1048576\r\n" + b" " * 2**20
            writer = threading.Thread(target=_send_ignoring_reset, args=(oversized.sock, megabyte))
            writer.start()
            answer = read_until_closed(oversized.sock)
            writer.join(10)
            assert not answer or b"bad_request" in answer, answer

        # A peer that half-closes without sending anything: closed quietly, with no reply.
        with Connection(addr) as silent:
            silent.sock.shutdown(socket.SHUT_WR)
            assert silent.read_all() == []

        assert twenty_fresh_connections(addr) < 3.0
    finally:
        for conn in stuck:
            conn.close()


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(data)
