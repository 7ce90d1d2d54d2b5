"""The release tarball as a user meets it: unpack, start.sh, fetch the welcome page, stop.sh.

The tarball is $MODPROXY_DIST, else the newest dist/modproxy-*.tar.gz (`make test-dist` builds one).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

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
