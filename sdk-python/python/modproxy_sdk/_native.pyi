"""Stubs for ``modproxy_sdk._native``, the Rust core (pyo3); checked by mypy.stubtest."""

import asyncio
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any, Final, Protocol, final

__all__ = [
    "DEFAULT_MAX_FRAME",
    "NativeAsyncClient",
    "NativeClient",
    "Registration",
    "check_method_name",
    "decode_frames",
    "serve",
    "serve_async",
]

DEFAULT_MAX_FRAME: Final[int]

@final
class Registration:
    """Registers a backend in etcd while it serves, so a module with ``discover = "etcd"`` finds it.

    The key ``<prefix><address>`` (prefix ``/modproxy/modules/<module>/`` unless given) holds the
    address on a lease of ``ttl`` seconds that is kept alive, renewed after etcd comes back, and
    revoked when serving stops. ``address`` defaults to the bound address, which must then be a
    specific IP, not ``0.0.0.0``. ``etcd`` lists the cluster's ``http://host:port`` URLs.
    """

    def __new__(
        cls,
        etcd: Sequence[str],
        module: str,
        *,
        address: str | None = None,
        prefix: str | None = None,
        ttl: float = 10.0,
    ) -> Registration: ...

class _MethodSpec(Protocol):
    """One registered method: what ``modproxy_sdk._backend._Method`` provides."""

    @property
    def name(self) -> str: ...
    @property
    def func(self) -> Callable[..., Any]: ...
    @property
    def takes_head(self) -> bool: ...
    @property
    def is_async(self) -> bool: ...
    @property
    def description(self) -> str: ...

def check_method_name(name: str, registered: Container[str]) -> None:
    """Raises ``ValueError`` unless ``name`` may be registered beside ``registered``.

    The core's rules: not empty, not beginning with ``_`` (reserved for the protocol), and each
    name once.
    """

def serve(
    addr: str,
    methods: Sequence[_MethodSpec],
    *,
    max_frame: int = ...,
    event_loop: asyncio.AbstractEventLoop | None = None,
    register: Registration | None = None,
) -> None:
    """Serves ``methods`` on ``addr`` until Ctrl-C, blocking the calling thread (GIL released)."""

def serve_async(
    addr: str,
    methods: Sequence[_MethodSpec],
    *,
    max_frame: int = ...,
    register: Registration | None = None,
) -> Awaitable[None]:
    """Binds ``addr`` and returns an awaitable that serves ``methods`` until cancelled."""

def decode_frames(
    data: bytes, max_frame: int = ..., chunk_size: int = 0
) -> tuple[list[bytes], str | None]:
    """Decodes ``data`` with the core's length-line decoder.

    Returns the payloads, and the error kind (as in the test vectors) or None.
    """

@final
class NativeClient:
    """A blocking client over one keep-alive connection (the core's ``BlockingClient``)."""

    def __new__(
        cls, addr: str, *, module: str | None = None, timeout: float = 30.0
    ) -> NativeClient: ...
    def call(self, method: str, data: Any) -> Any:
        """Calls ``method``; raises ``MethodError``, ``TimeoutError`` or ``ConnectionError``."""
    def close(self) -> None:
        """Closes the connection; the next call opens another."""

@final
class NativeAsyncClient:
    """An asyncio client over one keep-alive connection (the core's ``Client``)."""

    def __new__(
        cls, addr: str, *, module: str | None = None, timeout: float = 30.0
    ) -> NativeAsyncClient: ...
    def call(self, method: str, data: Any) -> Awaitable[Any]:
        """Calls ``method``; raises ``MethodError``, ``TimeoutError`` or ``ConnectionError``."""
