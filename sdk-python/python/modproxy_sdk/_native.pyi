"""Stubs for ``modproxy_sdk._native``, the Rust core (pyo3); checked by mypy.stubtest."""

import asyncio
from collections.abc import Awaitable, Callable, Container, Sequence
from typing import Any, Final, Protocol

__all__ = ["DEFAULT_MAX_FRAME", "check_method_name", "decode_frames", "serve", "serve_async"]

DEFAULT_MAX_FRAME: Final[int]

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
) -> None:
    """Serves ``methods`` on ``addr`` until Ctrl-C, blocking the calling thread (GIL released)."""

def serve_async(
    addr: str, methods: Sequence[_MethodSpec], *, max_frame: int = ...
) -> Awaitable[None]:
    """Binds ``addr`` and returns an awaitable that serves ``methods`` until cancelled."""

def decode_frames(
    data: bytes, max_frame: int = ..., chunk_size: int = 0
) -> tuple[list[bytes], str | None]:
    """Decodes ``data`` with the core's length-line decoder.

    Returns the payloads, and the error kind (as in the test vectors) or None.
    """
