"""`Backend`: a registry of handler functions, served by the Rust core."""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar, overload

from . import _native, _schema
from ._native import Registration

__all__ = ["DEFAULT_MAX_FRAME", "Backend", "Handler", "Registration"]

#: Largest request payload accepted unless ``max_frame`` says otherwise (64 MiB).
DEFAULT_MAX_FRAME: int = _native.DEFAULT_MAX_FRAME

#: A handler: ``def f(data)`` or ``def f(data, head)``, plain or ``async def``.
Handler = Callable[..., Any]

H = TypeVar("H", bound=Handler)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class _Method:
    """One registered handler, as the native core reads it."""

    name: str
    func: Handler
    takes_head: bool
    is_async: bool
    #: What ``_describe`` says about it (JSON text), from its type hints and docstring.
    description: str

    @classmethod
    def inspect(cls, name: str, func: Handler) -> _Method:
        """Reads once, at registration, how the function wants to be called."""
        if not callable(func):
            raise TypeError(f"method {name!r}: expected a function, got {type(func).__name__}")
        return cls(name, func, _takes_head(name, func), _is_async(func), _schema.describe(func))


class Backend:
    """An independent set of methods, served over the length-line protocol.

    >>> app = Backend()
    >>> @app.method
    ... def add(data):
    ...     return {"sum": data["a"] + data["b"]}
    >>> app.methods
    ['add']

    The module-level :func:`modproxy_sdk.method` and :func:`modproxy_sdk.serve` use a default
    instance; create your own when one process serves several registries, or in tests.
    """

    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    @property
    def methods(self) -> list[str]:
        """The registered method names, sorted."""
        return sorted(self._methods)

    @overload
    def method(self, func: H, /) -> H: ...

    @overload
    def method(self, func: None = None, /, *, name: str | None = None) -> Callable[[H], H]: ...

    def method(self, func: H | None = None, /, *, name: str | None = None) -> H | Callable[[H], H]:
        """Registers a handler under ``name`` (default: the function's ``__name__``).

        Use bare (``@app.method``) or with a name (``@app.method(name="user.get")``). The
        function is returned unchanged. It is called with ``data`` or with ``(data, head)``,
        depending on how many positional parameters it takes; ``data`` and ``head`` are plain
        JSON values (``dict``, ``list``, ``str``, ...).

        The function's type hints and docstring describe it to callers of ``_describe``
        (``def add(data: AddTodo) -> Todo``, with dataclasses, TypedDicts, pydantic models,
        ``Optional``, ``list``, ``Literal``, ...); see ``modproxy_sdk._schema``. The hints only
        describe: ``data`` still arrives as plain JSON values.

        Raises ``ValueError`` if the name is empty, begins with ``_`` (reserved for the
        protocol: ``_ping``, ``_pipeline``, ...) or is already registered.
        """

        def register(func: H) -> H:
            method_name = name if name is not None else getattr(func, "__name__", "")
            _native.check_method_name(method_name, self._methods)
            self._methods[method_name] = _Method.inspect(method_name, func)
            return func

        return register if func is None else register(func)

    def serve(
        self,
        addr: str,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        register: Registration | None = None,
    ) -> None:
        """Serves the methods on ``addr`` (``"host:port"``) until Ctrl-C or SIGTERM.

        Blocks the calling thread, with the GIL released: plain handlers run on worker
        threads, ``async def`` handlers on an asyncio loop in a thread of its own. On Ctrl-C
        or SIGTERM, stops accepting connections, lets requests in flight finish (up to 10 s)
        and returns normally; a second Ctrl-C or SIGTERM meanwhile stops at once, and returns
        normally too. Methods registered after serving starts are not served.

        With ``register``, the backend registers in etcd from when it listens until it stops
        (see :class:`Registration`); the lease is revoked before requests in flight drain.

        Raises ``OSError`` if ``addr`` cannot be bound.
        """
        methods = list(self._methods.values())
        needs_loop = any(m.is_async for m in methods)
        # Signals innermost: they are quiet again before the event loop's thread is joined.
        with _event_loop_thread(needs_loop) as loop, _stop_signals_interrupt():
            _native.serve(addr, methods, max_frame=max_frame, event_loop=loop, register=register)

    async def serve_async(
        self,
        addr: str,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        register: Registration | None = None,
    ) -> None:
        """Serves the methods on ``addr`` until the awaiting task is cancelled.

        For programs that already run an asyncio loop: ``async def`` handlers run on that
        loop, plain handlers on worker threads. Under ``asyncio.run``, Ctrl-C cancels the
        task. Raises ``OSError`` if ``addr`` cannot be bound.
        """
        await _native.serve_async(
            addr, list(self._methods.values()), max_frame=max_frame, register=register
        )


def _takes_head(name: str, func: Handler) -> bool:
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: give them data only
        return False
    positional = [p for p in parameters if p.kind in _POSITIONAL]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if len(required) <= 2 and (positional or variadic):
        return len(positional) >= 2 or variadic
    raise TypeError(
        f"method {name!r}: a handler takes (data) or (data, head), "
        f"but {getattr(func, '__qualname__', func)!r} has signature {inspect.signature(func)}"
    )


def _is_async(func: Handler) -> bool:
    call = getattr(func, "__call__", None)  # noqa: B004 - objects with an async __call__ count too
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


@contextmanager
def _event_loop_thread(needed: bool) -> Iterator[asyncio.AbstractEventLoop | None]:
    """Runs an asyncio loop in a daemon thread for ``async def`` handlers, if there are any."""
    if not needed:
        yield None
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="modproxy-asyncio", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """While serving, SIGTERM and SIGINT both stop the server like Ctrl-C; a second one stops it
    at once; any later one, or one that comes as serving ends, is let go silently.

    SIGTERM when nobody installed a handler of their own. SIGINT when it is Python's Ctrl-C
    handler, or ignored: a process started in the background by a shell inherits SIGINT ignored,
    and Python then never installs its KeyboardInterrupt handler, so `kill -INT` would not stop
    it (the Rust and Node SDKs stop either way). Only in the main thread, the only one Python
    delivers signals to.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    received = 0
    done = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        # The first stops gracefully, the second at once (the native serve reads both).
        if not done and received <= 2:
            raise KeyboardInterrupt

    unset = {
        signal.SIGTERM: (signal.SIG_DFL,),
        signal.SIGINT: (signal.SIG_IGN, signal.default_int_handler),
    }
    taken = {
        signum: previous
        for signum, ours_if in unset.items()
        if (previous := signal.getsignal(signum)) in ours_if
    }
    for signum in taken:
        signal.signal(signum, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        # One that landed after the native serve had returned: serving is over, as it asked.
        if not received:
            raise
    finally:
        done = True
        for signum, previous in taken.items():
            signal.signal(signum, previous)
