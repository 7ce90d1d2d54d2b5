"""The whole stack for end-to-end tests: the real ``modproxy`` binary in front of the three example
backends (Rust, Python, Node), each on a free port, with a temporary HOME (started by tests/stack.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stack import LANGUAGES, Stack


class PeeredStack(Stack):
    """A stack whose backends know the proxy's raw-frame port ($MODPROXY_PROXY), so that each
    example's ``stats`` can call its peer module (the next language's todo) through the proxy."""

    def start_backend(self, lang: str) -> None:
        # The proxy's port is chosen before any backend starts; the backends inherit the variable.
        os.environ["MODPROXY_PROXY"] = f"127.0.0.1:{self.port}"
        super().start_backend(lang)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A fresh stack per test, so the todo lists start empty."""
    monkeypatch.setenv("MODPROXY_PROXY", "")  # restored when the test ends
    modules = {lang: f"todo-{lang}" for lang in LANGUAGES}
    with PeeredStack(
        tmp_path / "home",
        modules,
        settings="pipeline = 16, fail_timeout = 0.5",
        server="raw_frames = true",
    ) as running:
        yield running
