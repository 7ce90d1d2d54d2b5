"""End to end: a browser-style POST through the real ``modproxy`` binary to the Python example.

Needs ``target/debug/modproxy`` (``cargo build -p modproxy``; ``make test-python`` builds it first).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO
from wire import free_port, wait_until_listening

PROXY = REPO / "target" / "debug" / "modproxy"
APP = REPO / "examples" / "python-backend" / "app.py"


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def proxy_url(tmp_path: Path):
    if not PROXY.is_file():
        pytest.fail(
            f"{PROXY} is missing: build it with `cargo build -p modproxy` (make test-python does)"
        )
    backend_addr = ("127.0.0.1", free_port())
    port = free_port()
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    if (REPO / "html").is_dir():
        shutil.copytree(REPO / "html", home / "html")
    else:
        (home / "html").mkdir()
    (home / "conf" / "default.toml").write_text(
        f"""
[server]
port = {port}
listen = "127.0.0.1"
root_path = "html"

[module]
module_socket = [{{ module = "py", forward_pass = "{backend_addr[0]}:{backend_addr[1]}" }}]
""",
        encoding="utf-8",
    )
    backend = subprocess.Popen([sys.executable, str(APP), f"{backend_addr[0]}:{backend_addr[1]}"])
    proxy = subprocess.Popen([str(PROXY), "--home", str(home)])
    try:
        wait_until_listening(backend_addr)
        wait_until_listening(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proxy)
        stop(backend)


def post(url: str, body: bytes) -> tuple[int, bytes, str]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def envelope(method: str, data: object = None) -> bytes:
    return json.dumps({"head": {"method": method, "token": "t"}, "data": data}).encode()


def test_post_through_the_proxy_reaches_the_python_backend(proxy_url):
    status, body, _ = post(f"{proxy_url}/py/", envelope("add", {"title": "from the browser"}))
    assert status == 200, body
    assert json.loads(body) == {"id": 1, "title": "from the browser", "done": False}

    status, body, _ = post(f"{proxy_url}/py/", envelope("list"))
    assert status == 200
    assert json.loads(body) == {"todos": [{"id": 1, "title": "from the browser", "done": False}]}


def test_error_replies_pass_through_as_the_body(proxy_url):
    status, body, _ = post(f"{proxy_url}/py/", envelope("done", {"id": 42}))
    assert status == 200
    assert json.loads(body)["error"]["code"] == "not_found"
    status, body, _ = post(f"{proxy_url}/py/anything/after", envelope("_ping"))
    assert (status, json.loads(body)) == (200, {"pong": True})
