"""Self-registration in a real etcd (/usr/bin/etcd; ``make etcd`` installs it), on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from modproxy_sdk import Registration
from wire import free_port, wait_until_listening

PREFIX = "/modproxy/modules/py/"


class Etcd:
    """A single-member etcd on free ports; ``restart`` brings up an empty one on the same ports."""

    def __init__(self, workdir: str) -> None:
        self.client, self.peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client}"
        self.workdir = workdir
        self.runs = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        peer = f"http://127.0.0.1:{self.peer}"
        process = subprocess.Popen(
            ["/usr/bin/etcd", "--name", "default", "--data-dir", f"{self.workdir}/{self.runs}",
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until_listening(("127.0.0.1", self.client))
        return process

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def restart_empty(self) -> None:
        self.stop()
        self.process = self._start()


@pytest.fixture
def cluster() -> Iterator[Etcd]:
    with tempfile.TemporaryDirectory() as workdir:
        running = Etcd(workdir)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
def etcd(cluster: Etcd) -> str:
    return cluster.url


def registered(etcd: str) -> list[str]:
    out = subprocess.run(
        ["etcdctl", "--endpoints", etcd, "get", "--prefix", PREFIX, "--print-value-only"],
        env={**os.environ, "ETCDCTL_API": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in out.stdout.splitlines() if line]


def until(check, within: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "timed out"
        time.sleep(0.05)
    return time.monotonic() - start


def backend(etcd: str, ttl: float) -> tuple[subprocess.Popen[str], str]:
    addr = f"127.0.0.1:{free_port()}"
    code = (
        "import sys, modproxy_sdk as m\n"
        "r = m.Registration([sys.argv[2]], 'py', ttl=float(sys.argv[3]))\n"
        "m.serve(sys.argv[1], register=r)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, addr, etcd, str(ttl)], text=True)
    return process, addr


def test_a_served_backend_registers_and_sigterm_revokes_at_once(etcd):
    process, addr = backend(etcd, ttl=10)
    try:
        until(lambda: registered(etcd) == [addr], within=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        # The lease is revoked, not left to its 10 s TTL.
        assert until(lambda: registered(etcd) == [], within=2) < 2
    finally:
        process.kill()


def test_a_killed_backend_goes_within_its_ttl(etcd):
    process, addr = backend(etcd, ttl=2)
    until(lambda: registered(etcd) == [addr], within=10)
    process.kill()
    process.wait()
    assert registered(etcd) == [addr], "nothing revoked it: it stays until the lease ends"
    until(lambda: registered(etcd) == [], within=5)


def test_a_ttl_under_a_second_is_refused():
    with pytest.raises(ValueError, match="ttl"):
        Registration(["http://127.0.0.1:2379"], "py", ttl=0.5)


def test_after_losing_etcd_the_backend_registers_again(cluster):
    process, addr = backend(cluster.url, ttl=2)
    try:
        until(lambda: registered(cluster.url) == [addr], within=10)
        # Back empty: the old lease is gone, so only registering again brings the backend back.
        cluster.stop()
        time.sleep(1)
        cluster.restart_empty()
        until(lambda: registered(cluster.url) == [addr], within=15)
    finally:
        process.kill()
