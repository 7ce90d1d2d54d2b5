"""The release tarball as a user meets it: unpack, start.sh, fetch the welcome page, stop.sh; write a
backend in each language with nothing but the release (its sdk/ folder) and call it through the proxy.

The tarball is $MODPROXY_DIST, else the newest dist/modproxy-*.tar.gz (`make test-dist` builds one).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYOUT = (
    "bin/modproxy",
    "conf/default.toml",
    "html/index.html",
    "html/demo.html",
    "html/status.html",
    "logs",
    "start.sh",
    "stop.sh",
    "modproxy.service",
    "sdk/README.md",
)
# The SDKs in sdk/, VERSION being the proxy's.
SDK_LAYOUT = (
    "modproxy_sdk-{v}-cp39-abi3-manylinux_*_x86_64.whl",
    "modproxy-sdk-{v}.tgz",
    "modproxy-sdk-linux-x64-gnu-{v}.tgz",
    "modproxy-sdk-{v}.crate",
    "modproxy-sdk-{v}/Cargo.toml",
)


def tarball() -> Path:
    given = os.environ.get("MODPROXY_DIST")
    if given:
        return Path(given)
    built = sorted(
        (REPO / "dist").glob("modproxy-*.tar.gz"), key=lambda p: p.stat().st_mtime
    )
    if not built:
        pytest.fail(
            "no dist/modproxy-*.tar.gz: run `make dist` (or `make test-dist`) first"
        )
    return built[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def run(script: Path) -> subprocess.CompletedProcess[str]:
    # From another directory: the scripts must find their HOME by their own location.
    return subprocess.run(
        [str(script)], cwd="/", capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The tarball unpacked into tmp_path, its config moved to a free port."""
    with tarfile.open(tarball()) as tar:
        tar.extractall(tmp_path, filter="tar")
    (top,) = tmp_path.iterdir()
    assert re.fullmatch(r"modproxy-\d+\.\d+\.\d+\S*", top.name), top.name
    conf = top / "conf/default.toml"
    text, count = re.subn(r"(?m)^port = \d+", f"port = {free_port()}", conf.read_text())
    assert count == 1, "conf/default.toml has one [server] port line"
    conf.write_text(text)
    return top


def port_of(home: Path) -> int:
    match = re.search(r"(?m)^port = (\d+)", (home / "conf/default.toml").read_text())
    assert match
    return int(match.group(1))


def test_the_layout_is_complete(home: Path) -> None:
    for entry in LAYOUT:
        assert (home / entry).exists(), f"{entry} is missing from the tarball"
    for script in ("bin/modproxy", "start.sh", "stop.sh"):
        assert os.access(home / script, os.X_OK), f"{script} is not executable"
    version = subprocess.run(
        [str(home / "bin/modproxy"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    assert home.name == f"modproxy-{version}"
    for pattern in SDK_LAYOUT:
        found = list((home / "sdk").glob(pattern.format(v=version)))
        assert len(found) == 1, f"sdk/{pattern.format(v=version)}: {found}"


def test_the_npm_packages_are_laid_out_as_napi_rs_does(home: Path) -> None:
    def unpack(tgz: Path) -> tuple[list[str], dict[str, Any]]:
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/package.json")
            assert member
            return tar.getnames(), json.load(member)

    (main,) = (home / "sdk").glob("modproxy-sdk-[0-9]*.tgz")
    (platform,) = (home / "sdk").glob("modproxy-sdk-linux-x64-gnu-*.tgz")
    main_files, main_json = unpack(main)
    platform_files, platform_json = unpack(platform)
    # The JavaScript package names its platform package, of its own version, as optional, and holds no
    # binary; the platform package holds the addon and says which machines it fits.
    assert main_json["optionalDependencies"] == {
        "modproxy-sdk-linux-x64-gnu": main_json["version"]
    }
    assert not [name for name in main_files if name.endswith(".node")], main_files
    for entry in ("index.js", "index.mjs", "index.d.ts", "native.js"):
        assert f"package/{entry}" in main_files, entry
    assert main_json["exports"]["."]["require"] == "./index.js"
    assert main_json["exports"]["."]["import"] == "./index.mjs"
    assert main_json["types"] == "index.d.ts"
    assert platform_json["version"] == main_json["version"]
    assert (platform_json["os"], platform_json["cpu"], platform_json["libc"]) == (
        ["linux"],
        ["x64"],
        ["glibc"],
    )
    assert "package/modproxy-sdk.linux-x64-gnu.node" in platform_files, platform_files


def test_the_wheel_is_one_typed_abi3_wheel_that_describes_itself(home: Path) -> None:
    (wheel,) = (home / "sdk").glob("modproxy_sdk-*.whl")
    # One wheel for every CPython from 3.9: the stable ABI, a manylinux platform tag.
    assert re.fullmatch(
        r"modproxy_sdk-[^-]+-cp39-abi3-manylinux_2_\d+_x86_64\.whl", wheel.name
    )
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
    for entry in ("py.typed", "_native.pyi", "_native.abi3.so", "__init__.py"):
        assert f"modproxy_sdk/{entry}" in names, entry
    assert "Requires-Python: >=3.9" in meta
    assert "Description-Content-Type: text/markdown" in meta
    assert "# modproxy-sdk (Python)" in meta, "the README is the long description"


@pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="no systemd-analyze here"
)
def test_the_systemd_unit_verifies(home: Path) -> None:
    # As installed to this directory rather than /opt/modproxy: verify checks that the commands exist.
    unit = home / "modproxy.service"
    text = unit.read_text()
    for setting in (
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=modproxy",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ):
        assert f"\n{setting}\n" in text, setting
    unit.write_text(text.replace("/opt/modproxy", str(home)))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are warnings on stderr with exit status 0: both must be clean.
    assert verified.returncode == 0, verified.stderr
    assert (
        str(unit) not in verified.stderr and "modproxy.service" not in verified.stderr
    ), verified.stderr


def test_start_serves_the_welcome_page_and_stop_ends_it(home: Path) -> None:
    pidfile = home / "logs/modproxy.pid"
    started = run(home / "start.sh")
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text())
    try:
        assert alive(pid)

        again = run(home / "start.sh")
        assert again.returncode != 0, "a second start is refused"
        assert "already running" in again.stderr
        assert int(pidfile.read_text()) == pid

        url = f"http://127.0.0.1:{port_of(home)}/"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert "Module Proxy is running" in response.read().decode()
        assert (home / "logs/modproxy.log").exists(), "logs go to HOME/logs"
    finally:
        stopped = run(home / "stop.sh")
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the process is gone"
    assert not pidfile.exists(), "the pid file is removed"


def test_a_stale_pid_file_does_not_block_a_start(home: Path) -> None:
    pidfile = home / "logs/modproxy.pid"
    pidfile.write_text("999999999\n")  # no such process
    started = run(home / "start.sh")
    try:
        assert started.returncode == 0, started.stderr
        assert int(pidfile.read_text()) != 999999999
    finally:
        assert run(home / "stop.sh").returncode == 0
    assert not pidfile.exists()


class Clock:
    """Named phases and how long each took, shown at the end of the test."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.phases.append((name, time.monotonic() - start))

    def report(self) -> str:
        total = sum(seconds for _, seconds in self.phases)
        lines = [f"  {name:<40} {seconds:6.1f} s" for name, seconds in self.phases]
        return "\n".join(
            ["release backends, timed:", *lines, f"  {'total':<40} {total:6.1f} s"]
        )


def user_env(tmp: Path) -> dict[str, str]:
    """A user with nothing of the checkout: a fresh HOME and an empty npm cache, PATH without the
    checkout's tools. The toolchains stay where rustup and cargo put them."""
    home = tmp / "user-home"
    (home / ".npm").mkdir(parents=True)
    real_home = Path.home()
    env = {
        "PATH": os.pathsep.join(
            entry
            for entry in os.environ["PATH"].split(os.pathsep)
            if entry and not Path(entry).resolve().is_relative_to(REPO)
        ),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CARGO_HOME": os.environ.get("CARGO_HOME", str(real_home / ".cargo")),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(real_home / ".rustup")),
        "npm_config_cache": str(home / ".npm"),
        "npm_config_update_notifier": "false",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    # Where the registries are reached through a proxy, keep it.
    for name, value in os.environ.items():
        if name.lower() in ("http_proxy", "https_proxy", "no_proxy"):
            env[name] = value
    return env


# What a user of the release does not have: the checkout's SDK sources and its .venv.
CHECKOUT_SDKS = ("sdk-rust", "sdk-python", "sdk-node", ".venv")


def hiding_the_checkout() -> list[str]:
    """A prefix that runs a command with CHECKOUT_SDKS out of sight, empty directories mounted over
    them in a mount namespace of its own (`unshare`, as root); [] where that cannot be done, leaving
    the assertions on the generated manifests as the check."""
    mounts = " && ".join(
        f"mount -t tmpfs none {shlex.quote(str(REPO / name))}" for name in CHECKOUT_SDKS
    )
    prefix = ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$0" "$@"']
    probe = [*prefix, "test", "!", "-e", str(REPO / "sdk-rust/Cargo.toml")]
    try:
        hidden = subprocess.run(probe, capture_output=True, timeout=30, check=False)
    except OSError:
        return []
    return prefix if hidden.returncode == 0 else []


def must(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def wait_listening(addr: str, process: subprocess.Popen[bytes], log: Path) -> None:
    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, f"{addr}: exited\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"{addr}: not listening\n{log.read_text()}"
            )
            time.sleep(0.05)


def post(url: str, body: dict[str, object]) -> object:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_a_backend_in_each_language_from_the_release_alone(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock()
    env = user_env(tmp_path)
    hide = hiding_the_checkout()
    work = tmp_path / "work"
    work.mkdir()
    conf = home / "conf/default.toml"
    modproxy = str(home / "bin/modproxy")
    sdk = home / "sdk"
    projects: dict[str, tuple[Path, str]] = {}
    for lang in ("python", "node", "rust"):
        name = f"release-{lang}"
        out = must(
            [*hide, modproxy, "new", name, "--lang", lang, "--register", str(conf)],
            work,
            env,
        )
        listen = re.search(r"listening on (\S+)\.\n", out)
        assert listen, out
        projects[lang] = (work / name, listen.group(1))

    # Each manifest names the release's sdk/, never the checkout the binary was built in.
    manifests = {
        "python": "pyproject.toml",
        "node": "package.json",
        "rust": "Cargo.toml",
    }
    for lang, (project, _) in projects.items():
        text = (project / manifests[lang]).read_text()
        assert str(REPO) not in text and "sdk-" + lang not in text, text
    assert (
        f"file://{sdk}/modproxy_sdk-"
        in (projects["python"][0] / "pyproject.toml").read_text()
    )

    # Python and Node install prebuilt SDKs: no Rust toolchain on PATH for them.
    no_rust = {
        **env,
        "PATH": os.pathsep.join(
            entry
            for entry in env["PATH"].split(os.pathsep)
            if not (Path(entry) / "cargo").exists()
        ),
    }
    assert not shutil.which("cargo", path=no_rust["PATH"])

    python_project = projects["python"][0]
    venv = tmp_path / "venv"
    with clock.phase("python: venv, pip install -e .[test]"):
        must(
            [*hide, os.path.realpath(sys.executable), "-m", "venv", str(venv)],
            work,
            env,
        )
        must(
            [*hide, str(venv / "bin/pip"), "install", "--quiet", "-e", ".[test]"],
            python_project,
            no_rust,
        )
    installed = must(
        [
            *hide,
            str(venv / "bin/python"),
            "-c",
            "import modproxy_sdk; print(modproxy_sdk.__file__)",
        ],
        work,
        env,
    )
    assert Path(installed.strip()).is_relative_to(venv), installed
    with clock.phase("python: pytest"):
        must(
            [*hide, str(venv / "bin/pytest"), "-q", "-p", "no:cacheprovider"],
            python_project,
            env,
        )

    node_project = projects["node"][0]
    with clock.phase("node: npm install (empty cache)"):
        must(
            [*hide, "npm", "install", "--no-audit", "--no-fund"], node_project, no_rust
        )
    addon = (
        node_project
        / "node_modules/modproxy-sdk-linux-x64-gnu/modproxy-sdk.linux-x64-gnu.node"
    )
    assert addon.is_file(), "the platform package brings the prebuilt addon"
    assert not (node_project / "node_modules/modproxy-sdk").is_symlink()
    with clock.phase("node: npm test"):
        must([*hide, "npm", "test"], node_project, env)

    rust_project = projects["rust"][0]
    # The repository's target/ and lock, so that only the SDK crate and the project compile.
    rust_env = {**env, "CARGO_TARGET_DIR": str(REPO / "target")}
    shutil.copy(REPO / "Cargo.lock", rust_project / "Cargo.lock")
    with clock.phase("rust: cargo test"):
        must([*hide, "cargo", "test", "--quiet"], rust_project, rust_env)

    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {
        "python": [str(venv / "bin/python"), "app.py"],
        "node": ["node", "index.js"],
        "rust": [str(REPO / "target/debug/release-rust")],
    }
    backends = []
    try:
        with clock.phase("start the three backends and the proxy"):
            for lang, (project, listen) in projects.items():
                log = logs / f"{lang}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        [*hide, *commands[lang], listen],
                        cwd=project,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                backends.append(process)
                wait_listening(listen, process, log)
            started = run(home / "start.sh")
            assert started.returncode == 0, started.stderr
        try:
            with clock.phase("call each backend through the proxy"):
                for lang in projects:
                    url = f"http://127.0.0.1:{port_of(home)}/release-{lang}/"
                    add = post(
                        url, {"head": {"method": "add"}, "data": {"a": 2, "b": 3}}
                    )
                    assert add == {"sum": 5}, f"{lang}: {add}"
                    hello = post(
                        url, {"head": {"method": "hello"}, "data": {"name": "Ada"}}
                    )
                    assert hello == {"message": "Hello, Ada!"}, f"{lang}: {hello}"
        finally:
            stopped = run(home / "stop.sh")
        assert stopped.returncode == 0, stopped.stderr
    finally:
        for process in backends:
            process.terminate()
            process.wait(timeout=15)
    with capsys.disabled():
        hidden = "hidden by mounts" if hide else "not hidden (no unshare here)"
        print(f"\n{clock.report()}\n  (the checkout's SDKs were {hidden})")
