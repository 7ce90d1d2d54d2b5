"""The whole stack, started one way for every harness: the real ``modproxy`` binary on a temporary HOME in
front of example backends (Rust, Python, Node), each on a free port, each waited for until it answers,
all stopped on the way out.

Python harnesses import it (tests/e2e, sdk-python/tests, bench/run.py); Node harnesses run it as a
subprocess (``python3 tests/stack.py --module node=js``): it prints one JSON line describing the stack,
then obeys ``stop NAME [SIGNAL]`` lines on stdin, answering each with the process's exit as JSON, and
tears everything down when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parents[1]
LANGUAGES = ("rust", "python", "node")

Spawn = Callable[[str, list[str]], "subprocess.Popen[bytes]"]


def target_dir(profile: str = "debug") -> Path:
    """Where cargo put this profile's binaries (``CARGO_TARGET_DIR`` is honoured)."""
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")).resolve() / profile


def proxy_binary(profile: str = "debug") -> Path:
    """The ``modproxy`` binary: ``MODPROXY_BIN`` if set, else the profile's build."""
    return Path(os.environ.get("MODPROXY_BIN", target_dir(profile) / "modproxy"))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nobody listens on right now and not handed out before by this process. Binding to 0
    can offer a port again as soon as its probe socket closes: a stack that asked for its ports in a row
    once got one port for two backends, and the second could not listen."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def wait_listening(
    port: int,
    proc: subprocess.Popen[bytes],
    what: str,
    timeout: float = 20,
    log: Callable[[], str] = lambda: "",
) -> None:
    """Returns once ``port`` accepts connections; raises if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode} before listening:\n{log()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"{what} did not listen on port {port} within {timeout} s:\n{log()}"
    )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Sends ``sig``, then SIGKILL if the process is still there after 10 s; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def socket_modules(ports: Mapping[str, int], settings: str = "") -> str:
    """A ``module_socket`` list: one entry per module name, forwarding to 127.0.0.1 on its port."""
    extra = f", {settings}" if settings else ""
    entries = ",\n".join(
        f'  {{ module = "{name}", forward_pass = "127.0.0.1:{port}"{extra} }}'
        for name, port in ports.items()
    )
    return f"module_socket = [\n{entries}\n]"


def write_home(
    home: Path, port: int, modules: str = "", server: str = "", more: str = ""
) -> Path:
    """A modproxy HOME: a copy of the repository's html/ and a conf/default.toml listening on
    127.0.0.1:``port`` with ``server`` lines in [server], ``modules`` in [module] and ``more`` after."""
    shutil.copytree(REPO / "html", home / "html")
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "default.toml").write_text(
        f'[server]\nport = {port}\nlisten = "127.0.0.1"\n{server}\n\n[module]\n{modules}\n\n{more}',
        encoding="utf-8",
    )
    return home


def backend_command(lang: str, addr: str, profile: str = "debug") -> list[str]:
    """The command line that serves one example backend (examples/) on ``addr``."""
    if lang == "rust":
        return [str(target_dir(profile) / "rust-backend"), addr]
    if lang == "python":
        return [sys.executable, str(REPO / "examples/python-backend/app.py"), addr]
    if lang == "node":
        return ["node", str(REPO / "examples/node-backend/index.js"), addr]
    if lang == "go":  # built by `make test-browser` (go build), beside the Rust example
        return [str(target_dir(profile) / "go-backend"), addr]
    raise ValueError(
        f"no example backend in {lang!r}; there are {', '.join((*LANGUAGES, 'go'))}"
    )


def quiet_spawn(_name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Starts ``argv`` with stdout thrown away; stderr is shared, for a failing test to show."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def launch(
    name: str,
    argv: list[str],
    port: int,
    spawn: Spawn = quiet_spawn,
    log: Callable[[], str] = lambda: "",
    timeout: float = 20,
) -> subprocess.Popen[bytes]:
    """Starts a server with ``spawn`` and waits until it answers on ``port``."""
    proc = spawn(name, argv)
    wait_listening(port, proc, name, timeout, log)
    return proc


def launch_proxy(
    home: Path,
    port: int,
    profile: str = "debug",
    spawn: Spawn = quiet_spawn,
    name: str = "modproxy",
    log: Callable[[], str] = lambda: "",
    timeout: float = 20,
) -> subprocess.Popen[bytes]:
    """Starts ``modproxy`` on ``home`` (see ``write_home``) and waits until it answers on ``port``."""
    binary = proxy_binary(profile)
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `cargo build --workspace` first")
    return launch(name, [str(binary), "--home", str(home)], port, spawn, log, timeout)


class Stack:
    """A running proxy in front of example backends. ``modules`` maps the language of each example to the
    module it serves; ``procs`` maps each language, and "proxy", to its process. A context manager:
    leaving it stops everything."""

    def __init__(
        self,
        home: Path,
        modules: Mapping[str, str],
        settings: str = "",
        server: str = "",
        profile: str = "debug",
    ) -> None:
        self.home = home
        self.profile = profile
        self.port = free_port()
        self.backend_ports = {lang: free_port() for lang in modules}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        ports = {module: self.backend_ports[lang] for lang, module in modules.items()}
        write_home(home, self.port, socket_modules(ports, settings), server)
        try:
            for lang in modules:
                self.start_backend(lang)
            self.procs["proxy"] = launch_proxy(home, self.port, profile)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_backend(self, lang: str) -> None:
        """Starts (again) the example in ``lang`` on its port."""
        port = self.backend_ports[lang]
        command = backend_command(lang, f"127.0.0.1:{port}", self.profile)
        if not Path(command[0]).exists() and lang in ("rust", "go"):
            build = "cargo build --workspace" if lang == "rust" else "make test-browser"
            raise RuntimeError(f"{command[0]} is missing: run `{build}` first")
        self.procs[lang] = launch(f"{lang} backend", command, port)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Stops one process (a language's backend, or "proxy"); returns its exit code."""
        return stop_process(self.procs.pop(name), sig)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _obey(stack: Stack, line: str) -> dict[str, object]:
    """Carries out ``stop NAME [SIGNAL]``; the answer is the exit as Node reports one."""
    words = line.split()
    if len(words) not in (2, 3) or words[0] != "stop" or words[1] not in stack.procs:
        return {"error": f"not understood: {line.strip()}"}
    sig = signal.Signals[f"SIG{words[2]}"] if len(words) == 3 else signal.SIGTERM
    code = stack.stop(words[1], sig)
    if code < 0:
        return {"code": None, "signal": signal.Signals(-code).name}
    return {"code": code, "signal": None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="LANG=MODULE",
        help="an example and the module it serves",
    )
    parser.add_argument("--settings", default="", help="for every module entry")
    parser.add_argument("--server", default="", help="lines for [server]")
    parser.add_argument("--profile", default="debug")
    args = parser.parse_args()
    modules = dict(pair.split("=", 1) for pair in args.module)
    with tempfile.TemporaryDirectory(prefix="modproxy-stack-") as tmp:
        home = Path(tmp) / "home"
        try:
            stack = Stack(home, modules, args.settings, args.server, args.profile)
        except (RuntimeError, ValueError) as error:
            print(json.dumps({"error": str(error)}), flush=True)
            return 1
        with stack:
            ready = {"url": stack.url, "home": str(home), "ports": stack.backend_ports}
            print(json.dumps(ready), flush=True)
            for line in sys.stdin:
                print(json.dumps(_obey(stack, line)), flush=True)
    return 0


if __name__ == "__main__":
    # SIGTERM tears down like stdin closing does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
