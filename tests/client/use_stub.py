"""Right uses of the Python clients `modproxy client --lang py` generates: mypy --strict must find
nothing wrong here (client.test.js checks). ``peer_client`` is the stub committed in
examples/python-backend (the Node example's contract); ``todo_stub`` and ``edge_stub`` are generated
from todo.json and edge_contract.json."""

from __future__ import annotations

from typing import Literal

from edge_stub import AsyncEdgeCases, EdgeCases, PutItemData, TreeNode
from modproxy_sdk import AsyncClient, Client
from peer_client import AsyncTodoNode, CountResult, TodoNode
from todo_stub import AsyncTodo, TagItem, Todo


def uses(client: Client) -> int:
    peer = TodoNode(client)
    todo = peer.add({"title": "milk"})
    todo_id: int = todo["id"]
    finished: bool = peer.done({"id": todo_id})["done"]
    counted: CountResult = peer.count()  # `data` that admits None may be left out
    titles: list[str] = [each["title"] for each in peer.list()["todos"]]

    fixture = Todo(client)
    item: TagItem = {"id": 1, "color": "green", "labels": ["x"]}
    tagged: Literal["tagged"] | bool = fixture.tag({"item": item, "note": None})
    fixture.tag({"item": {"id": 2, "color": "red"}})
    total: int = fixture.add({"a": 1, "b": 2})
    fixture.any([1, "two", None])

    edge = EdgeCases(client)
    put: PutItemData = {"from": 'it\'s "b"', "note-x": "x", "__mangled": 1.5}
    reply = edge.put_item(put)
    ok = reply is not None and "ok" in reply
    tree: TreeNode = {"children": [{"children": [], "value": ["leaf"]}], "value": "root"}
    sizes: dict[str, int] = edge.tree(tree)
    found = edge.find()
    edge.a_method_with_a_name_long_enough_to_split_its_lines({"colour": "colour-number-5"})
    listed: Literal[1, False] | float | None = edge.list_items([{"class": "x"}])
    return (
        todo_id
        + int(finished)
        + counted["count"]
        + len(titles)
        + int(tagged is True)
        + total
        + int(ok)
        + len(sizes)
        + (found["a"] if found else 0)
        + int(listed or 0)
    )


async def uses_async(client: AsyncClient) -> int:
    count: int = (await AsyncTodoNode(client).count())["count"]
    found = await AsyncEdgeCases(client).find("x")
    return count + await AsyncTodo(client).add({"a": 1, "b": 2}) + (found or {"a": 0})["a"]
