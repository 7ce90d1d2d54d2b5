"""Misuses of the Python clients `modproxy client --lang py` generates: mypy --strict must refuse
exactly lines 14 to 19, each for its reason (client.test.js asserts where and why)."""

from __future__ import annotations

from edge_stub import EdgeCases
from modproxy_sdk import AsyncClient, Client
from peer_client import AsyncTodoNode, TodoNode
from todo_stub import Todo


async def misuses(client: Client, async_client: AsyncClient) -> None:
    # One misuse a line, lines 14 to 19: nothing else here may fail.
    TodoNode(client).done({"id": "one"})
    print(TodoNode(client).count()["total"])
    TodoNode(async_client)
    Todo(client).tag({"item": {"id": 1, "color": "purple"}})
    await AsyncTodoNode(async_client).add({"titel": "milk"})
    EdgeCases(client).put_item({"from": "c"})
