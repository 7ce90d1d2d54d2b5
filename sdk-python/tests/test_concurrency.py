"""Slow handlers overlap and never hold up the network core or each other."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from modproxy_sdk import Backend
from wire import Connection, call


def make_app(release: threading.Event) -> Backend:
    app = Backend()

    @app.method
    async def nap(data):
        await asyncio.sleep(0.2)
        return {"woke": data}

    @app.method
    def doze(data):
        time.sleep(0.2)
        return {"woke": data}

    @app.method
    def stuck(data):
        # Blocks until the test lets go: a sync handler that takes as long as it likes.
        release.wait(10)
        return "released"

    @app.method
    def spin(data):
        # Holds the GIL as much as a pure-Python loop can.
        end = time.monotonic() + data
        n = 0
        while time.monotonic() < end:
            n += 1
        return n

    @app.method
    def quick(data):
        return data

    return app


@pytest.fixture
def addr(serve, release):
    return serve(make_app(release))


def timed_parallel_calls(addr, method: str, n: int) -> float:
    """Makes ``n`` calls at once, each on its own connection; returns the seconds they took."""
    connections = [Connection(addr) for _ in range(n)]
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=n) as pool:
            replies = list(
                pool.map(lambda pair: pair[1].call(method, pair[0]), enumerate(connections))
            )
        elapsed = time.perf_counter() - start
    finally:
        for conn in connections:
            conn.close()
    assert replies == [{"woke": i} for i in range(n)]
    return elapsed


def test_100_concurrent_calls_to_an_async_handler_overlap(addr, record_property):
    elapsed = timed_parallel_calls(addr, "nap", 100)
    record_property("seconds_for_100_async_calls", round(elapsed, 3))
    print(f"\n100 concurrent calls to an async handler sleeping 0.2 s took {elapsed:.3f} s")
    # In sequence they would take 20 s; overlapped, a little over 0.2 s.
    assert elapsed < 3.0


def test_concurrent_calls_to_a_sync_handler_overlap_on_worker_threads(addr, record_property):
    elapsed = timed_parallel_calls(addr, "doze", 50)
    record_property("seconds_for_50_sync_calls", round(elapsed, 3))
    print(f"\n50 concurrent calls to a sync handler sleeping 0.2 s took {elapsed:.3f} s")
    assert elapsed < 3.0  # 10 s in sequence


def test_a_blocked_sync_handler_does_not_hold_up_other_calls(addr, release):
    with ThreadPoolExecutor(max_workers=1) as pool:
        blocked = pool.submit(call, addr, "stuck")
        time.sleep(0.1)
        start = time.perf_counter()
        for i in range(20):
            assert call(addr, "quick", i) == i
        for i in range(3):
            assert call(addr, "nap", i) == {"woke": i}
        elapsed = time.perf_counter() - start
        assert not blocked.done()
        release.set()
        assert blocked.result(timeout=5) == "released"
    assert elapsed < 3.0  # 3 naps of 0.2 s in sequence; blocked behind `stuck`: never


def test_the_core_answers_while_python_is_busy(addr):
    """``_ping`` is answered by Rust alone: a handler spinning in Python cannot delay it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(call, addr, "spin", 1.0)
        time.sleep(0.1)
        with Connection(addr) as conn:
            for _ in range(10):
                start = time.perf_counter()
                assert conn.call("_ping") == {"pong": True}
                assert time.perf_counter() - start < 0.2
        assert busy.result(timeout=10) > 0
