"""Row 7b's second peer: a length-line server written by hand on asyncio, without the SDK, that does what
the SDK does with a request: parse the envelope with ``json.loads``, dispatch on ``head.method`` through a
table of methods, call ``echo``, serialise its result as the reply (an unknown method or a malformed
envelope gets the protocol's error reply, docs/PROTOCOL.md section 2.3). ``asyncio_echo.py`` is the floor.

.venv/bin/python bench/peers/asyncio_dispatch.py 127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any


def echo(data: Any) -> Any:
    return data


METHODS: dict[str, Callable[[Any], Any]] = {"echo": echo}


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def dispatch(payload: bytes) -> Any:
    try:
        envelope = json.loads(payload)
    except ValueError as e:
        return error("bad_request", f"not JSON: {e}")
    head = envelope.get("head") if isinstance(envelope, dict) else None
    name = head.get("method") if isinstance(head, dict) else None
    if not isinstance(name, str):
        return error("bad_request", "the envelope needs a string head.method")
    method = METHODS.get(name)
    if method is None:
        return error("method_not_found", f"no method named '{name}'")
    return method(envelope.get("data"))


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readexactly(12)
            payload = await reader.readexactly(int(line[:10]))
            reply = json.dumps(dispatch(payload), separators=(",", ":")).encode()
            writer.write(b"%10d\r\n" % len(reply) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    server = await asyncio.start_server(serve, host, int(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:21249"))
