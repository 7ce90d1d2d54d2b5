"""A backend served by the blocking, module-level ``serve()``; run by test_serve.py."""

from __future__ import annotations

import asyncio
import sys
import time

from modproxy_sdk import method, serve


@method
def add(data):
    return {"sum": data["a"] + data["b"]}


@method(name="user.get")
async def get_user(data, head):
    await asyncio.sleep(0)
    return {"id": data["id"], "token": head.get("token")}


@method
async def nap(data):
    await asyncio.sleep(data)
    return "rested"


@method
def doze(data):
    time.sleep(data)
    return "rested"


if __name__ == "__main__":
    serve(sys.argv[1])
    print("serve returned", flush=True)
