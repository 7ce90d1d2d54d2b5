"""Handlers over real TCP: both signatures, sync and async, values, and every error reply."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import pytest
from modproxy_sdk import Backend, MethodError
from wire import Connection, call, frame


class NotFoundError(MethodError):
    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"no {what}")


def make_app() -> Backend:
    app = Backend()

    @app.method
    def echo(data):
        return data

    @app.method(name="echo.head")
    def echo_head(data, head):
        return {"data": data, "head": head}

    @app.method
    async def aecho(data):
        await asyncio.sleep(0)
        return data

    @app.method(name="aecho.head")
    async def aecho_head(data, head):
        await asyncio.sleep(0.01)
        return {"data": data, "head": head}

    @app.method
    def refuse(data):
        raise MethodError("invalid", f"cannot take {data!r}")

    @app.method
    async def arefuse(data):
        raise NotFoundError(data)

    @app.method
    def crash(data):
        return {"ratio": 1 / data}

    @app.method
    async def acrash(data):
        await asyncio.sleep(0)
        raise RuntimeError(f"async trouble with {data}")

    @app.method
    def silent_crash(data):
        raise ValueError

    @app.method
    def give(data):
        return RETURNS[data]()

    @app.method
    async def agive(data):
        return RETURNS[data]()

    return app


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


RETURNS = {
    "set": lambda: {"tags": {"a", "b"}},
    "object": lambda: [1, object()],
    "nan": lambda: {"x": math.nan},
    "inf": lambda: math.inf,
    "bigint": lambda: 2**64,
    "intkey": lambda: {1: "one"},
    "cycle": _cycle,
    "tuple": lambda: (1, "two", (3,)),
    "none": lambda: None,
    "bytes": lambda: b"raw",
    "coroutine": lambda: asyncio.sleep(0),
}


@pytest.fixture
def addr(serve):
    return serve(make_app())


VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.25,
    1e300,
    "",
    "Zoë ✓ 日本 🎉",
    [],
    {},
    [1, [2, [3, {"deep": [None]}]]],
    {"a": {"b": {"c": [True, 1, "x", None, 2.5]}}, "": "empty key"},
]


@pytest.mark.parametrize("method", ["echo", "aecho"])
def test_data_round_trips_as_plain_python_values(addr, method):
    with Connection(addr) as conn:
        for value in VALUES:
            reply = conn.call(method, value)
            assert reply == value
            assert type(reply) is type(value)


@pytest.mark.parametrize("method", ["echo.head", "aecho.head"])
def test_handler_taking_head_gets_every_head_field(addr, method):
    reply = call(addr, method, {"n": 1}, token="secret", trace=7, user={"id": 3})
    assert reply == {
        "data": {"n": 1},
        "head": {"method": method, "token": "secret", "trace": 7, "user": {"id": 3}},
    }


def test_missing_data_arrives_as_none(addr):
    with Connection(addr) as conn:
        conn.send_raw(frame(b'{"head": {"method": "echo.head"}}'))
        assert json.loads(conn.read_frame()) == {"data": None, "head": {"method": "echo.head"}}


def test_method_error_becomes_its_reply(addr):
    assert call(addr, "refuse", 3) == {"error": {"code": "invalid", "message": "cannot take 3"}}


def test_method_error_subclass_from_async_handler(addr):
    reply = call(addr, "arefuse", "todo 9")
    assert reply == {"error": {"code": "not_found", "message": "no todo 9"}}


def test_exception_becomes_handler_error_and_its_traceback_is_logged(addr, caplog):
    caplog.set_level(logging.ERROR, logger="modproxy_sdk")
    reply = call(addr, "crash", 0)
    assert reply == {
        "error": {"code": "handler_error", "message": "ZeroDivisionError: division by zero"}
    }
    [record] = [r for r in caplog.records if r.name == "modproxy_sdk"]
    assert "'crash'" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError
    assert "in crash" in caplog.text, "the traceback names the handler's frame"


def test_async_exception_becomes_handler_error_and_is_logged(addr, caplog):
    caplog.set_level(logging.ERROR, logger="modproxy_sdk")
    reply = call(addr, "acrash", 5)
    assert reply == {
        "error": {"code": "handler_error", "message": "RuntimeError: async trouble with 5"}
    }
    assert "in acrash" in caplog.text


def test_exception_without_message_is_named_by_its_type(addr):
    assert call(addr, "silent_crash") == {
        "error": {"code": "handler_error", "message": "ValueError"}
    }


@pytest.mark.parametrize("method", ["give", "agive"])
@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("set", """value of type 'set' at $["tags"]"""),
        ("object", "value of type 'object' at $[1]"),
        ("nan", """float nan (JSON has no NaN or infinity) at $["x"]"""),
        ("inf", "float inf"),
        ("bigint", "int too large"),
        ("intkey", "dict key of type 'int'"),
        ("cycle", "nested more than"),
        ("bytes", "value of type 'bytes' at $"),
        ("coroutine", "value of type 'coroutine' at $; it is awaitable"),
    ],
)
def test_unconvertible_reply_is_a_handler_error_naming_the_type(addr, method, kind, expected):
    with Connection(addr) as conn:
        reply = conn.call(method, kind)
        assert reply["error"]["code"] == "handler_error"
        assert f"the reply of '{method}' cannot be converted to JSON" in reply["error"]["message"]
        assert expected in reply["error"]["message"]
        assert conn.call("_ping") == {"pong": True}, "the connection survives"


def test_tuples_become_arrays_and_none_null(addr):
    assert call(addr, "give", "tuple") == [1, "two", [3]]
    assert call(addr, "agive", "none") is None


def test_reply_keeps_the_order_of_dict_keys(addr):
    with Connection(addr) as conn:
        conn.send_raw(frame(b'{"head":{"method":"echo"},"data":{"zeta":1,"alpha":{"y":2,"x":3}}}'))
        assert conn.read_frame() == b'{"zeta":1,"alpha":{"y":2,"x":3}}'


def test_builtin_ping_and_unknown_method(addr):
    with Connection(addr) as conn:
        assert conn.call("_ping") == {"pong": True}
        assert conn.call("nope") == {
            "error": {"code": "method_not_found", "message": "no method named 'nope'"}
        }


def test_payload_that_is_not_an_envelope_is_a_bad_request_and_the_connection_lives(addr):
    with Connection(addr) as conn:
        for payload in (b"not json", b'{"data": 1}', b'{"head": {"method": 3}}', b"[]"):
            conn.send_raw(frame(payload))
            reply = json.loads(conn.read_frame())
            assert reply["error"]["code"] == "bad_request", payload
        assert conn.call("echo", 1) == 1


def test_bad_frame_gets_a_bad_request_reply_then_the_connection_closes(addr):
    with Connection(addr) as conn:
        conn.send_raw(b"        1x\r\n")
        reply = json.loads(conn.read_frame())
        assert reply["error"]["code"] == "bad_request"
        assert "bad frame" in reply["error"]["message"]
        assert conn.read_frame() is None


def test_many_requests_share_one_connection(addr):
    with Connection(addr) as conn:
        for i in range(200):
            method = "echo" if i % 2 else "aecho"
            assert conn.call(method, {"i": i}) == {"i": i}


def test_several_frames_in_one_write_get_replies_in_order(addr):
    with Connection(addr) as conn:
        burst = b"".join(
            frame(json.dumps({"head": {"method": "echo"}, "data": i}).encode()) for i in range(20)
        )
        conn.send_raw(burst)
        assert [json.loads(conn.read_frame()) for _ in range(20)] == list(range(20))


def test_request_larger_than_max_frame_is_refused(serve):
    addr = serve(make_app(), max_frame=64)
    with Connection(addr) as conn:
        assert conn.call("echo", "x" * 10) == "x" * 10
        conn.send_raw(frame(json.dumps({"head": {"method": "echo"}, "data": "x" * 100}).encode()))
        reply = json.loads(conn.read_frame())
        assert reply["error"]["code"] == "bad_request"
        assert "larger than the maximum of 64" in reply["error"]["message"]


def test_backends_are_independent(serve):
    first, second = Backend(), Backend()

    @first.method
    def who(data):
        return "first"

    @second.method(name="who")
    def who_else(data):
        return "second"

    assert call(serve(first), "who") == "first"
    assert call(serve(second), "who") == "second"


def test_bind_failure_raises_oserror(addr):
    async def bind_taken() -> None:
        await Backend().serve_async(f"{addr[0]}:{addr[1]}")

    with pytest.raises(OSError, match="in use"):
        asyncio.run(bind_taken())
