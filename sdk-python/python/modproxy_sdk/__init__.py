"""Module Proxy backends in Python: write plain functions, the Rust core serves them.

>>> from modproxy_sdk import method, serve, MethodError
>>> @method
... def add(data):
...     return {"sum": data["a"] + data["b"]}
>>> serve("127.0.0.1:21231")  # doctest: +SKIP

A request ``{"head": {"method": "add", ...}, "data": {"a": 1, "b": 2}}`` arriving through the
proxy calls ``add({"a": 1, "b": 2})`` and replies ``{"sum": 3}``. Framing, dispatch and
networking are done by the shared Rust core; this package registers handlers and converts values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import overload

from ._backend import DEFAULT_MAX_FRAME, Backend, H, Handler, Registration
from ._client import AsyncClient, Client
from ._error import MethodError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "AsyncClient",
    "Backend",
    "Client",
    "Handler",
    "MethodError",
    "Registration",
    "method",
    "serve",
]

_default = Backend()


@overload
def method(func: H, /) -> H: ...


@overload
def method(func: None = None, /, *, name: str | None = None) -> Callable[[H], H]: ...


def method(func: H | None = None, /, *, name: str | None = None) -> H | Callable[[H], H]:
    """Registers a handler with the default backend; see :meth:`Backend.method`.

    >>> @method(name="user.get")
    ... async def get_user(data, head):
    ...     return {"id": data["id"], "token": head.get("token")}
    """
    if func is None:
        return _default.method(name=name)
    return _default.method(func)


def serve(
    addr: str, *, max_frame: int = DEFAULT_MAX_FRAME, register: Registration | None = None
) -> None:
    """Serves the methods registered with :func:`method` on ``addr`` until Ctrl-C or SIGTERM.

    See :meth:`Backend.serve`.
    """
    _default.serve(addr, max_frame=max_frame, register=register)
