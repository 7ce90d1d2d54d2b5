"""The whole stack for end-to-end tests: the real ``modproxy`` binary in front of the three example
backends (Rust, Python, Node), each on a free port, with a temporary HOME (started by tests/stack.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stack import LANGUAGES, Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh stack per test, so the todo lists start empty."""
    modules = {lang: f"todo-{lang}" for lang in LANGUAGES}
    with Stack(
        tmp_path / "home", modules, settings="pipeline = 16, fail_timeout = 0.5"
    ) as running:
        yield running
