"""Pipelining negotiation through a served Python backend: the core answers ``_pipeline`` and then
wraps every reply in ``{"seq":S,"reply":R}``, R byte for byte the reply a plain connection gets."""

from __future__ import annotations

import json

from modproxy_sdk import Backend, MethodError
from wire import Connection, envelope, frame

NEGOTIATION = json.dumps(
    {"head": {"method": "_pipeline"}, "data": {"version": 1, "depth": 4}}, separators=(",", ":")
).encode()


def _app() -> Backend:
    app = Backend()

    @app.method
    def echo(data):
        return data

    @app.method
    async def later(data):
        return {"later": data}

    @app.method
    def refuse(data):
        raise MethodError("not_found", f"no todo {data}")

    return app


def _replies(addr, payloads: list[bytes]) -> list[bytes]:
    with Connection(addr) as conn:
        conn.send_raw(b"".join(frame(p) for p in payloads))
        return [conn.read_frame() or b"" for _ in payloads]


def test_a_negotiated_connection_gets_every_reply_enveloped_with_its_request_number(serve):
    addr = serve(_app())
    requests = [
        envelope("echo", {"b": 1, "a": [1, 2]}),
        envelope("later", 2),
        envelope("refuse", 3),
        envelope("_ping"),
        envelope("nope"),
    ]
    bare = _replies(addr, requests)
    assert bare[3] == b'{"pong":true}'

    replies = _replies(addr, [NEGOTIATION, *requests])
    assert replies[0] == b'{"pipeline":1}'
    expected = [b'{"seq":%d,"reply":%s}' % (n, reply) for n, reply in enumerate(bare, start=1)]
    # Written as they complete: the async handler may finish after the plain ones behind it.
    assert sorted(replies[1:], key=lambda reply: int(reply[7 : reply.index(b",")])) == expected
