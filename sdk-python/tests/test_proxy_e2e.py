"""End to end: a browser-style POST through the real ``modproxy`` binary to the Python example.

Needs ``target/debug/modproxy`` (``cargo build -p modproxy``; ``make test-python`` builds it first).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests"))
from stack import Stack, proxy_binary


@pytest.fixture
def proxy_url(tmp_path: Path) -> Iterator[str]:
    binary = proxy_binary()
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `cargo build -p modproxy` (make test-python does)")
    with Stack(tmp_path / "home", {"python": "py"}, server='root_path = "html"') as stack:
        yield stack.url


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
