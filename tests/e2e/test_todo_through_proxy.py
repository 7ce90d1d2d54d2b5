"""The three example backends behave alike through the real proxy: same methods, same error codes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import LANGUAGES, Stack


def call(stack: Stack, module: str, method: str, data: Any = None) -> tuple[int, Any]:
    body = json.dumps(
        {"head": {"method": method, "token": "e2e"}, "data": data}
    ).encode()
    request = urllib.request.Request(f"{stack.url}/{module}/", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_todo_list_round_trip(stack: Stack, lang: str) -> None:
    module = f"todo-{lang}"
    status, first = call(stack, module, "add", {"title": "write the docs"})
    assert status == 200
    assert first["title"] == "write the docs" and first["done"] is False
    _, second = call(stack, module, "add", {"title": "Zoë's ✓ review"})
    assert second["title"] == "Zoë's ✓ review"
    assert second["id"] != first["id"]

    _, done = call(stack, module, "done", {"id": first["id"]})
    assert done == {**first, "done": True}

    _, listed = call(stack, module, "list")
    assert listed == {"todos": [{**first, "done": True}, second]}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_validation_and_sdk_errors_are_replies(stack: Stack, lang: str) -> None:
    module = f"todo-{lang}"
    for bad in ({"title": ""}, {"title": "x" * 201}):
        status, reply = call(stack, module, "add", bad)
        assert status == 200, "an error reply is still a reply"
        assert reply["error"]["code"] == "invalid"
    _, reply = call(stack, module, "done", {"id": 999})
    assert reply["error"]["code"] == "not_found"
    _, reply = call(stack, module, "no_such_method")
    assert reply["error"]["code"] == "method_not_found"
    assert call(stack, module, "_ping") == (200, {"pong": True})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_concurrent_adds_all_land(stack: Stack, lang: str) -> None:
    module = f"todo-{lang}"
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(
            pool.map(
                lambda i: call(stack, module, "add", {"title": f"t{i}"}), range(100)
            )
        )
    assert all(status == 200 and "id" in reply for status, reply in replies)
    assert len({reply["id"] for _, reply in replies}) == 100
    _, listed = call(stack, module, "list")
    assert sorted(t["title"] for t in listed["todos"]) == sorted(
        f"t{i}" for i in range(100)
    )


def test_a_stopped_backend_fails_only_its_module(stack: Stack) -> None:
    stack.stop("python")
    status, reply = call(stack, "todo-python", "list")
    assert status == 502
    assert "no node" in reply["error"]["message"]
    for lang in ("rust", "node"):
        assert call(stack, f"todo-{lang}", "list")[0] == 200
    # Back after fail_timeout (0.5 s in this stack): traffic flows again.
    stack.start_backend("python")
    time.sleep(0.6)
    assert call(stack, "todo-python", "list") == (200, {"todos": []})


#: Whose ``count`` each example's ``stats`` asks for, through the proxy (the examples' defaults).
PEERS = {"python": "node", "node": "rust", "rust": "python"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_stats_calls_the_peer_backend_through_the_proxy(
    stack: Stack, lang: str
) -> None:
    peer = PEERS[lang]
    for i in range(3):
        assert call(stack, f"todo-{peer}", "add", {"title": f"peer {i}"})[0] == 200
    assert call(stack, f"todo-{lang}", "add", {"title": "mine"})[0] == 200
    assert call(stack, f"todo-{lang}", "stats") == (
        200,
        {"count": 1, "peer": f"todo-{peer}", "peer_count": 3},
    )
    # The proxy's refusal to reach a stopped peer passes on as this backend's error reply.
    stack.stop(peer)
    _, reply = call(stack, f"todo-{lang}", "stats")
    assert reply["error"]["code"] == "bad_gateway", reply
    assert f"todo-{peer}" in reply["error"]["message"], reply
