"""``Client`` and ``AsyncClient`` against a backend served by the SDK itself."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from modproxy_sdk import AsyncClient, Backend, Client, MethodError


def make_app() -> Backend:
    app = Backend()

    @app.method
    def add(data):
        return data["a"] + data["b"]

    @app.method
    def refuse(data):
        raise MethodError("not_found", f"no todo {data}")

    return app


@pytest.fixture
def addr(serve):
    host, port = serve(make_app())
    return f"{host}:{port}"


def test_sync_client_calls_and_maps_error_replies(addr):
    with Client(addr, timeout=5) as client:
        assert client.call("add", {"a": 1, "b": 2}) == 3
        with pytest.raises(MethodError) as refused:
            client.call("refuse", 3)
        assert refused.value.code == "not_found"
        assert refused.value.message == "no todo 3"
        # An error reply leaves the connection usable.
        assert client.call("add", {"a": 2, "b": 2}) == 4
        with pytest.raises(MethodError) as missing:
            client.call("nope")
        assert missing.value.code == "method_not_found"


def test_async_client_calls_concurrently_on_one_connection(addr):
    async def main() -> list[int]:
        client = AsyncClient(addr, timeout=5)
        calls = [client.call("add", {"a": i, "b": 1}) for i in range(20)]
        results = await asyncio.gather(*calls)
        with pytest.raises(MethodError) as refused:
            await client.call("refuse", 1)
        assert refused.value.code == "not_found"
        return results

    assert asyncio.run(main()) == [i + 1 for i in range(20)]


def test_a_silent_backend_times_out_and_a_closed_port_is_a_connection_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    host, port = listener.getsockname()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    with pytest.raises(TimeoutError):
        Client(f"{host}:{port}", timeout=0.3).call("add", {"a": 1, "b": 1})
    listener.close()
    for conn in accepted:
        conn.close()
    with pytest.raises(ConnectionError):
        Client(f"{host}:{port}", timeout=1).call("add")


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout"):
        Client("127.0.0.1:1", timeout=0)
