"""The whole stack for end-to-end tests: the real ``modproxy`` binary in front of the three example
backends (Rust, Python, Node), each on a free port, with a temporary HOME."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug"
LANGUAGES = ("rust", "python", "node")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


def backend_command(lang: str, addr: str) -> list[str]:
    if lang == "rust":
        return [str(TARGET / "rust-backend"), addr]
    if lang == "python":
        return [sys.executable, str(REPO / "examples/python-backend/app.py"), addr]
    return ["node", str(REPO / "examples/node-backend/index.js"), addr]


@dataclass
class Stack:
    """A running proxy and backends; ``procs`` maps a name to its process."""

    home: Path
    port: int
    backend_ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_backend(self, lang: str) -> None:
        port = self.backend_ports[lang]
        proc = subprocess.Popen(
            backend_command(lang, f"127.0.0.1:{port}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs[lang] = proc
        wait_listening(port, proc, f"{lang} backend")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_stack(tmp: Path, fail_timeout: float) -> Stack:
    for binary in ("modproxy", "rust-backend"):
        if not (TARGET / binary).exists():
            raise RuntimeError(
                f"{TARGET / binary} is missing: run `cargo build --workspace` first"
            )
    home = tmp / "home"
    shutil.copytree(REPO / "html", home / "html")
    (home / "conf").mkdir(parents=True)
    stack = Stack(
        home=home,
        port=free_port(),
        backend_ports={lang: free_port() for lang in LANGUAGES},
    )
    modules = ",\n".join(
        f'  {{ module = "todo-{lang}", forward_pass = "127.0.0.1:{port}", pipeline = 16, fail_timeout = {fail_timeout} }}'
        for lang, port in stack.backend_ports.items()
    )
    (home / "conf/default.toml").write_text(
        f'[server]\nport = {stack.port}\nlisten = "127.0.0.1"\n\n[module]\nmodule_socket = [\n{modules}\n]\n'
    )
    for lang in LANGUAGES:
        stack.start_backend(lang)
    proxy = subprocess.Popen(
        [str(TARGET / "modproxy"), "--home", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.procs["proxy"] = proxy
    wait_listening(stack.port, proxy, "modproxy")
    return stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fresh stack per test, so the todo lists start empty."""
    running = _start_stack(tmp_path, fail_timeout=0.5)
    try:
        yield running
    finally:
        for name in list(running.procs):
            running.stop(name)
