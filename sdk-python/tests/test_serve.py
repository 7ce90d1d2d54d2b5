"""The blocking ``serve()`` in a real process: it serves, and SIGINT / SIGTERM stop it promptly."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from modproxy_sdk import Backend
from wire import call, free_port, wait_until_listening

SCRIPT = Path(__file__).with_name("blocking_backend.py")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(params=["sigint-default", "sigint-ignored"])
def backend(request):
    """Starts blocking_backend.py; yields (process, address). Also as a shell starts a background
    job: with SIGINT ignored, which Python then leaves ignored unless the SDK takes it."""
    addr = ("127.0.0.1", free_port())
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), f"{addr[0]}:{addr[1]}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if request.param == "sigint-ignored" else None,
    )
    try:
        wait_until_listening(addr)
        yield process, addr
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def stop(process: subprocess.Popen[str], signum: int) -> tuple[float, str]:
    """Sends ``signum``; returns how long the process took to exit, and its stdout."""
    start = time.perf_counter()
    process.send_signal(signum)
    out, err = process.communicate(timeout=10)
    elapsed = time.perf_counter() - start
    assert process.returncode == 0, err
    return elapsed, out


def test_serve_answers_sync_and_async_handlers(backend):
    _, addr = backend
    assert call(addr, "add", {"a": 2, "b": 3}) == {"sum": 5}
    assert call(addr, "user.get", {"id": 7}, token="t") == {"id": 7, "token": "t"}
    assert call(addr, "_ping") == {"pong": True}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_serve_promptly_and_serve_returns(backend, signum):
    process, addr = backend
    assert call(addr, "add", {"a": 1, "b": 1}) == {"sum": 2}
    elapsed, out = stop(process, signum)
    assert "serve returned" in out
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"


@pytest.mark.parametrize("method", ["nap", "doze"])
def test_requests_in_flight_get_their_replies_before_serve_returns(backend, method):
    process, addr = backend
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(call, addr, method, 0.5)
        time.sleep(0.2)
        _, out = stop(process, signal.SIGTERM)
        assert in_flight.result(timeout=5) == "rested"
    assert "serve returned" in out


def test_idle_connections_do_not_delay_the_stop(backend):
    process, addr = backend
    idle = [socket.create_connection(addr) for _ in range(5)]
    try:
        elapsed, _ = stop(process, signal.SIGINT)
    finally:
        for conn in idle:
            conn.close()
    assert elapsed < 2.0


def test_bind_failure_raises_oserror_and_restores_the_sigterm_handler():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        app = Backend()
        app.method(lambda data: data, name="echo")
        with pytest.raises(OSError, match="in use"):
            app.serve(f"{host}:{port}")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_unparsable_address_raises_oserror():
    with pytest.raises(OSError, match="invalid socket address"):
        Backend().serve("not an address")


@pytest.mark.parametrize("method", ["nap", "doze"])
def test_a_second_stop_signal_during_the_shutdown_stops_at_once_and_silently(backend, method):
    # Ctrl-C on `make run`: the terminal's SIGINT, then make's SIGTERM, a slow request in flight.
    process, addr = backend
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_call_ignoring_errors, addr, method, 8)
        time.sleep(0.3)
        start = time.perf_counter()
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        elapsed = time.perf_counter() - start
    assert (process.returncode, err) == (0, "")
    assert "serve returned" in out
    assert elapsed < 4.0, f"took {elapsed:.2f} s: the second signal did not stop at once"


def _call_ignoring_errors(addr, method, data):
    """The request left in flight; its connection is cut when the backend stops at once."""
    with contextlib.suppress(OSError, ValueError):
        call(addr, method, data)
