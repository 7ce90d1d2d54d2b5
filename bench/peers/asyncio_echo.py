"""Row 7's Python peer: a length-line echo server written by hand on asyncio streams.

.venv/bin/python bench/peers/asyncio_echo.py 127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import json
import sys


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readexactly(12)
            payload = await reader.readexactly(int(line[:10]))
            reply = json.dumps(json.loads(payload).get("data"), separators=(",", ":")).encode()
            writer.write(b"%10d\r\n" % len(reply) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(addr: str) -> None:
    host, port = addr.rsplit(":", 1)
    server = await asyncio.start_server(echo, host, int(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:21245"))
