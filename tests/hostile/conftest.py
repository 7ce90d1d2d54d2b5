"""Fixtures for the hostile-client suite: a factory that starts the real ``modproxy`` (stopped after
the test), the backends the tests put behind it, and a report of the memory each test measured,
printed at the end of the run (``pytest -q`` shows it too)."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import FrameBackend, Proxy, WebSocketEcho

MEASUREMENTS: list[str] = []

StartProxy = Callable[[str, str], Proxy]
Report = Callable[[str], None]


@pytest.fixture(scope="session", autouse=True)
def _enough_descriptors() -> None:
    """A thousand WebSockets take two thousand descriptors here and as many in the proxy (which
    inherits the limit): raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 16384 if hard == resource.RLIM_INFINITY else min(hard, 16384)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """``start_proxy(server_lines, more_sections)`` starts a proxy on a fresh HOME."""
    started: list[Proxy] = []

    def start(server: str, rest: str) -> Proxy:
        proxy = Proxy(tmp_path / f"home{len(started)}", server, rest)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def backend() -> Iterator[FrameBackend]:
    backend = FrameBackend()
    yield backend
    backend.close()


@pytest.fixture
def ws_upstream() -> Iterator[WebSocketEcho]:
    upstream = WebSocketEcho()
    yield upstream
    upstream.close()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """``report(text)`` keeps a line of measurements for the summary at the end of the run."""
    return lambda text: MEASUREMENTS.append(f"{request.node.name}: {text}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASUREMENTS:
        terminalreporter.section("hostile clients: what the proxy held")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
