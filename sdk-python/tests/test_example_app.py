"""examples/python-backend/app.py, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO
from wire import Connection, free_port, wait_until_listening

APP = REPO / "examples" / "python-backend" / "app.py"


def start_app(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def app_addr():
    addr = ("127.0.0.1", free_port())
    process = start_app([f"{addr[0]}:{addr[1]}"])
    try:
        wait_until_listening(addr)
        yield addr
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in err


def test_add_list_done(app_addr):
    with Connection(app_addr) as conn:
        assert conn.call("list") == {"todos": []}
        assert conn.call("add", {"title": "  buy milk "}) == {
            "id": 1,
            "title": "buy milk",
            "done": False,
        }
        assert conn.call("add", {"title": "write tests"})["id"] == 2
        assert conn.call("done", {"id": 1}) == {"id": 1, "title": "buy milk", "done": True}
        assert conn.call("list") == {
            "todos": [
                {"id": 1, "title": "buy milk", "done": True},
                {"id": 2, "title": "write tests", "done": False},
            ]
        }


@pytest.mark.parametrize(
    ("method", "data", "code"),
    [
        ("add", {"title": ""}, "invalid"),
        ("add", {"title": "   "}, "invalid"),
        ("add", {"title": "x" * 201}, "invalid"),
        ("add", {}, "invalid"),
        ("add", None, "invalid"),
        ("done", {"id": 99}, "not_found"),
        ("done", {"id": "1"}, "invalid"),
        ("done", None, "invalid"),
    ],
)
def test_errors(app_addr, method, data, code):
    with Connection(app_addr) as conn:
        reply = conn.call(method, data)
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["message"]


def test_a_title_of_200_characters_is_accepted(app_addr):
    with Connection(app_addr) as conn:
        assert conn.call("add", {"title": "é" * 200})["title"] == "é" * 200


def test_listen_address_comes_from_the_environment_without_an_argument():
    addr = ("127.0.0.1", free_port())
    process = start_app([], env={"MODPROXY_LISTEN": f"{addr[0]}:{addr[1]}"})
    try:
        wait_until_listening(addr)
        with Connection(addr) as conn:
            assert conn.call("list") == {"todos": []}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0
