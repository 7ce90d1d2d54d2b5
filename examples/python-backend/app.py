"""Example Module Proxy backend in Python: an in-memory todo list.

    python examples/python-backend/app.py [ADDRESS]

Serves on ADDRESS, else $MODPROXY_LISTEN, else 127.0.0.1:21231, until Ctrl-C or SIGTERM.

Methods (the same as examples/rust-backend):

- ``add {"title": "..."}`` -> the new todo ``{id, title, done}``; ``invalid`` if the title is
  empty or over 200 characters.
- ``list`` -> ``{"todos": [...]}``, oldest first.
- ``done {"id": n}`` -> the todo, now done; ``not_found`` if no todo has that id.
- ``count`` -> ``{"count": n}``, how many todos there are.
- ``stats`` -> ``{"count": n, "peer": "todo-node", "peer_count": m}``: a backend-to-backend call,
  ``count`` of the module $MODPROXY_PEER (default ``todo-node``) through the proxy's raw-frame
  port $MODPROXY_PROXY (``host:port``, with ``[server] raw_frames = true``); ``unavailable``
  when $MODPROXY_PROXY is not set.

The handlers' type hints (``AddTodo``, ``Todo``, ...) describe the methods to ``_describe``. The
call in ``stats`` is typed: ``peer_client.py`` is generated from the Node example's contract by
``modproxy client --module todo-node --lang py``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

from modproxy_sdk import Client, MethodError, method, serve
from peer_client import TodoNode

DEFAULT_LISTEN = "127.0.0.1:21231"

#: Longest title accepted, in characters (the same rule as the Rust example).
MAX_TITLE_CHARS = 200


@dataclass
class Todo:
    id: int
    title: str
    done: bool = False


class AddTodo(TypedDict):
    """``data`` of ``add``."""

    title: str


class DoneTodo(TypedDict):
    """``data`` of ``done``."""

    id: int


class TodoPage(TypedDict):
    todos: list[Todo]


class Count(TypedDict):
    count: int


class Stats(TypedDict):
    count: int
    peer: str
    peer_count: int


class TodoList:
    """The todos, oldest first. Handlers run on several worker threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._todos: list[Todo] = []
        self._last_id = 0

    def add(self, title: str) -> Todo:
        title = title.strip()
        if not title:
            raise MethodError("invalid", "the title is empty; give the todo a title")
        if len(title) > MAX_TITLE_CHARS:
            raise MethodError(
                "invalid", f"the title has {len(title)} characters; the most is {MAX_TITLE_CHARS}"
            )
        with self._lock:
            self._last_id += 1
            todo = Todo(self._last_id, title)
            self._todos.append(todo)
            return todo

    def all(self) -> list[Todo]:
        with self._lock:
            return list(self._todos)

    def done(self, todo_id: int) -> Todo:
        with self._lock:
            for todo in self._todos:
                if todo.id == todo_id:
                    todo.done = True
                    return todo
        raise MethodError("not_found", f"no todo has id {todo_id}")


todos = TodoList()


@method
def add(data: AddTodo) -> Todo:
    """Adds a todo; ``invalid`` if the title is empty or over 200 characters."""
    title = data.get("title") if isinstance(data, dict) else None
    if not isinstance(title, str):
        raise MethodError("invalid", 'add takes {"title": "..."}')
    return asdict(todos.add(title))  # type: ignore[return-value]


@method(name="list")
def list_todos(data: Any) -> TodoPage:
    """Every todo, oldest first."""
    return {"todos": [asdict(todo) for todo in todos.all()]}  # type: ignore[misc]


@method
def done(data: DoneTodo) -> Todo:
    """Marks a todo done; ``not_found`` if no todo has that id."""
    todo_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(todo_id, int) or isinstance(todo_id, bool):
        raise MethodError("invalid", 'done takes {"id": <integer>}')
    return asdict(todos.done(todo_id))  # type: ignore[return-value]


@method
def count(data: Any) -> Count:
    """How many todos there are."""
    return {"count": len(todos.all())}


@method
def stats(data: Any) -> Stats:
    """This list's count beside a peer module's, asked through the proxy."""
    proxy = os.environ.get("MODPROXY_PROXY", "").strip()
    if not proxy:
        raise MethodError("unavailable", "set MODPROXY_PROXY to the proxy's raw-frame host:port")
    peer = os.environ.get("MODPROXY_PEER", "todo-node")
    # A client per call keeps the example short; a busy backend would keep one per thread.
    # TodoNode types the calls by the peer's contract: count() returns a CountResult.
    with Client(proxy, module=peer, timeout=5) as client:
        peer_count = TodoNode(client).count()["count"]
    return {"count": len(todos.all()), "peer": peer, "peer_count": peer_count}


def listen_addr(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> str:
    """The first argument, else $MODPROXY_LISTEN, else the default: every example backend's rule."""
    for candidate in (argv[1] if len(argv) > 1 else "", environ.get("MODPROXY_LISTEN", "")):
        if candidate.strip():
            return candidate.strip()
    return DEFAULT_LISTEN


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(listen_addr(sys.argv, os.environ))
    logging.getLogger("python-backend").info("stopped")


if __name__ == "__main__":
    main()
