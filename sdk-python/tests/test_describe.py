"""``_describe``: schemas derived from handlers' type hints, served by the core."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, NotRequired, Optional, TypedDict, Union

import pytest
from modproxy_sdk import Backend
from modproxy_sdk._schema import describe, schema_of
from wire import call


@dataclasses.dataclass
class AddTodo:
    """A todo to add."""

    title: str
    tags: list[str] = dataclasses.field(default_factory=list)
    priority: Optional[int] = None  # noqa: UP045 - the spelling under test


class Todo(TypedDict):
    id: int
    title: str
    done: bool
    note: NotRequired[str]


@dataclasses.dataclass
class Tree:
    label: str
    children: list[Tree]


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (Any, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Optional[str], {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
            },
        ),
        (object, {}),
    ],
)
def test_builtin_hints(hint, expected):
    assert schema_of(hint) == expected


def test_dataclass_is_an_object_with_its_required_fields():
    assert schema_of(AddTodo) == {
        "title": "AddTodo",
        "type": "object",
        "description": "A todo to add.",
        "properties": {
            "title": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "priority": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "required": ["title"],
    }


def test_a_reply_writes_every_dataclass_field_so_each_is_required():
    assert schema_of(AddTodo, reply=True)["required"] == ["title", "tags", "priority"]
    assert schema_of(list[AddTodo], reply=True)["$defs"]["AddTodo"]["required"] == [
        "title",
        "tags",
        "priority",
    ]


def test_typeddict_knows_its_optional_keys():
    schema = schema_of(Todo)
    assert schema["required"] == ["done", "id", "title"]
    assert schema["properties"]["note"] == {"type": "string"}
    assert "description" not in schema, "not dict's docstring"


def test_nested_and_recursive_types_go_under_defs():
    schema = schema_of(list[Tree])
    assert schema["items"] == {"$ref": "#/$defs/Tree"}
    assert schema["$defs"]["Tree"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}


def test_pydantic_models_are_described_by_pydantic():
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):
        name: str
        count: int = 0

    assert schema_of(Item) == Item.model_json_schema()
    assert schema_of(list[Item])["$defs"]["Item"]["properties"]["name"] == {
        "title": "Name",
        "type": "string",
    }


def test_a_function_is_described_by_its_first_parameter_return_and_docstring():
    async def add(data: AddTodo, head: dict[str, Any]) -> Todo:
        """Adds a todo.

        More words."""
        raise NotImplementedError

    def untyped(data):
        return data

    described = json.loads(describe(add))
    assert described["doc"] == "Adds a todo.\n\nMore words."
    assert described["data"]["title"] == "AddTodo"
    assert described["result"]["title"] == "Todo"
    assert json.loads(describe(untyped)) == {"doc": None, "data": {}, "result": {}}


def test_unresolvable_hints_describe_any_json():
    def add(data: NoSuchType) -> int:  # noqa: F821
        return 1

    assert json.loads(describe(add)) == {"doc": None, "data": {}, "result": {}}


def test_the_backend_answers_describe(serve):
    app = Backend()

    @app.method
    def add(data: AddTodo) -> Todo:
        """Adds a todo."""
        return {"id": 1, "title": data["title"], "done": False}  # type: ignore[index]

    @app.method
    def ping_me(data):
        return data

    addr = serve(app)
    reply = call(addr, "_describe")
    assert [m["name"] for m in reply["methods"]] == ["add", "ping_me"]
    assert reply["methods"][0]["doc"] == "Adds a todo."
    assert reply["methods"][0]["data"] == schema_of(AddTodo)
    assert reply["methods"][1] == {"name": "ping_me", "doc": None, "data": {}, "result": {}}
    # The hints describe; they do not convert: data still arrives as a dict.
    assert call(addr, "add", {"title": "t"}) == {"id": 1, "title": "t", "done": False}
