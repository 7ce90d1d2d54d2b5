"""`Client` and `AsyncClient`: call a backend, or a module through the proxy, from Python."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _native

if TYPE_CHECKING:  # typing.Self is 3.11+; only the type checker reads it here
    from typing_extensions import Self

__all__ = ["AsyncClient", "Client"]


class Client:
    """Calls methods over one keep-alive connection, one call at a time, blocking.

    ``addr`` is a backend's ``"host:port"``, or the proxy's HTTP port with ``[server] raw_frames =
    true`` together with ``module`` (the proxy then routes and balances each call). ``timeout``
    (seconds) bounds connecting and each reply. An error reply raises
    :class:`modproxy_sdk.MethodError` with its ``code``; no reply in time raises ``TimeoutError``;
    a broken connection ``ConnectionError`` (the next call connects again).

    >>> with Client("127.0.0.1:8080", module="todo", timeout=5) as todo:  # doctest: +SKIP
    ...     todo.call("add", {"title": "write docs"})

    Safe to share between threads: calls take turns on the connection. From inside a handler,
    prefer :class:`AsyncClient` in an ``async def`` handler, or a ``Client`` per backend.
    """

    def __init__(self, addr: str, *, module: str | None = None, timeout: float = 30.0) -> None:
        self._native = _native.NativeClient(addr, module=module, timeout=timeout)

    def call(self, method: str, data: Any = None) -> Any:
        """Calls ``method`` with ``data`` (any JSON value) and returns the reply's value."""
        return self._native.call(method, data)

    def close(self) -> None:
        """Closes the connection; a later call opens another."""
        self._native.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` for asyncio: ``await client.call(...)``; the network I/O runs in the Rust
    core, so the event loop never blocks. Concurrent calls take turns on the one connection.

    >>> todo = AsyncClient("127.0.0.1:8080", module="todo")  # doctest: +SKIP
    >>> await todo.call("count")  # doctest: +SKIP
    """

    def __init__(self, addr: str, *, module: str | None = None, timeout: float = 30.0) -> None:
        self._native = _native.NativeAsyncClient(addr, module=module, timeout=timeout)

    async def call(self, method: str, data: Any = None) -> Any:
        """Calls ``method`` with ``data`` (any JSON value) and returns the reply's value."""
        return await self._native.call(method, data)
