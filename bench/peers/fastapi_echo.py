"""Row 5's peer behind nginx: FastAPI on uvicorn, replying with the posted envelope's ``data``.

    .venv/bin/python -m uvicorn --app-dir bench/peers fastapi_echo:app --port PORT --workers 1

The handler reads the body with ``await request.json()`` and returns a ``JSONResponse``: the fastest
ordinary FastAPI idiom (no pydantic model, no ``jsonable_encoder`` pass), so the peer is not handicapped.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/{path:path}")
async def echo(request: Request) -> JSONResponse:
    envelope = await request.json()
    return JSONResponse(envelope.get("data"))
