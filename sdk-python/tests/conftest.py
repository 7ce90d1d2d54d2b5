"""Fixtures: backends served in-process by ``Backend.serve_async`` on a loop in a thread."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from modproxy_sdk import DEFAULT_MAX_FRAME, Backend

sys.path.insert(0, str(Path(__file__).parent))

from wire import Address, free_port, wait_until_listening

REPO = Path(__file__).resolve().parents[2]


class ServedBackend:
    """A backend served by ``serve_async`` under ``asyncio.run`` in a daemon thread."""

    def __init__(self, app: Backend, max_frame: int) -> None:
        self.addr: Address = ("127.0.0.1", free_port())
        self.failure: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(app, max_frame),))
        self._thread.daemon = True
        self._thread.start()
        self._started.wait(10)
        wait_until_listening(self.addr)

    async def _run(self, app: Backend, max_frame: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started.set()
        try:
            await app.serve_async(f"{self.addr[0]}:{self.addr[1]}", max_frame=max_frame)
        except asyncio.CancelledError:
            pass
        except BaseException as failure:
            self.failure = failure
            raise

    def stop(self) -> None:
        """Cancels the serving task, as Ctrl-C under ``asyncio.run`` would."""
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "serve_async did not stop when cancelled"
        assert self.failure is None, self.failure


@pytest.fixture
def serve() -> Iterator[Callable[..., Address]]:
    """``serve(app, max_frame=...)`` starts ``app`` and returns its address until the test ends."""
    started: list[ServedBackend] = []

    def start(app: Backend, max_frame: int = DEFAULT_MAX_FRAME) -> Address:
        started.append(ServedBackend(app, max_frame))
        return started[-1].addr

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that blocked handlers wait on; set at teardown so nothing stays blocked."""
    event = threading.Event()
    yield event
    event.set()
