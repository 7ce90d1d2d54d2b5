"""What ``_describe`` says about a handler: JSON Schemas (draft 2020-12) from its type hints.

``def add(data: AddTodo) -> Todo`` is described by the hints of its first parameter and of its
return. Understood: ``None``, ``bool``, ``int``, ``float``, ``str``, ``Any``, ``list``/``tuple``/
``Sequence``, ``dict``/``Mapping`` with ``str`` keys, ``Optional``/``Union``/``X | Y``,
``Literal``, dataclasses, ``TypedDict`` and, when pydantic is installed, its models (described by
pydantic itself). A hint it does not understand, or none, is described as ``{}``: any JSON.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Union

__all__ = ["describe", "schema_of"]

Schema = dict[str, Any]

_SCALARS: dict[Any, Schema] = {
    type(None): {"type": "null"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
}
_ARRAYS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Iterable)
_OBJECTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_UNIONS: tuple[Any, ...] = (Union, *((types.UnionType,) if sys.version_info >= (3, 10) else ()))


def describe(func: Callable[..., Any]) -> str:
    """The method's description as JSON text: ``{"doc", "data", "result"}``."""
    hints = _hints(func)
    data = _first_parameter(func)
    description = {
        "doc": inspect.getdoc(func),
        "data": schema_of(hints[data]) if data in hints else {},
        "result": schema_of(hints["return"], reply=True) if "return" in hints else {},
    }
    return json.dumps(description)


def schema_of(hint: Any, *, reply: bool = False) -> Schema:
    """The JSON Schema of ``hint``; named types (dataclasses, TypedDicts, models) go in ``$defs``.
    With ``reply``, it describes a value the SDK writes: a dataclass field with a default is then
    required too, since every field is written.

    >>> schema_of(list[int])
    {'type': 'array', 'items': {'type': 'integer'}}
    """
    if _is_pydantic_model(hint):
        schema: Schema = hint.model_json_schema(ref_template="#/$defs/{model}")
        return schema
    defs: dict[str, Schema] = {}
    schema = _Builder(defs, reply=reply).schema(hint, root=True)
    if defs:
        schema["$defs"] = defs
    return schema


class _Builder:
    """One schema's walk over a hint; ``defs`` collects the named types it meets."""

    def __init__(self, defs: dict[str, Schema], *, reply: bool) -> None:
        self.defs = defs
        self.reply = reply

    def schema(self, hint: Any, *, root: bool = False) -> Schema:
        if hint is Any or hint is inspect.Parameter.empty:
            return {}
        if hint is None or hint in _SCALARS:
            return dict(_SCALARS[type(None) if hint is None else hint])
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in _UNIONS:
            return {"anyOf": [self.schema(arg) for arg in args]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if hint in _ARRAYS or origin in _ARRAYS:
            if origin is tuple and args and args[-1] is not Ellipsis:
                items = [self.schema(arg) for arg in args]
                return {"type": "array", "prefixItems": items, "items": False}
            return {"type": "array", "items": self.schema(args[0]) if args else {}}
        if hint in _OBJECTS or origin in _OBJECTS:
            values = self.schema(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": values}
        if _is_named(hint):
            return self.named(hint, root=root)
        return {}

    def named(self, hint: type, *, root: bool) -> Schema:
        """A dataclass, TypedDict or model: inline at the root (with its name as ``title``), by
        ``$ref`` elsewhere, so that nested and recursive types are written once."""
        name = hint.__name__
        if root:
            return self.definition(hint)
        if name not in self.defs:
            self.defs[name] = {}  # claimed first: a recursive type refers to itself
            self.defs[name] = self.definition(hint)
        return {"$ref": f"#/$defs/{name}"}

    def definition(self, hint: type) -> Schema:
        if _is_pydantic_model(hint):
            model: Schema = getattr(hint, "model_json_schema")(ref_template="#/$defs/{model}")  # noqa: B009
            self.defs.update(model.pop("$defs", {}))
            return model
        fields = _hints(hint)
        if dataclasses.is_dataclass(hint):
            required = [
                f.name
                for f in dataclasses.fields(hint)
                if self.reply
                or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            ]
            names = [f.name for f in dataclasses.fields(hint)]
        else:  # TypedDict
            required, fields = _typeddict_keys(hint, fields)
            names = list(fields)
        schema: Schema = {
            "title": hint.__name__,
            "type": "object",
            "properties": {n: self.schema(fields.get(n, Any)) for n in names},
            "required": required,
        }
        # Its own docstring only: a bare TypedDict would inherit dict's; dataclasses invent one.
        doc = inspect.cleandoc(hint.__dict__.get("__doc__") or "")
        if doc and not doc.startswith(f"{hint.__name__}("):
            schema["description"] = doc
        return schema


def _typeddict_keys(hint: type, fields: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The required keys and the field hints. ``__required_keys__`` misses ``NotRequired[...]``
    written as a string (``from __future__ import annotations``): the hints' own markers decide."""
    required = set(getattr(hint, "__required_keys__", fields))
    marked = _hints(hint, include_extras=True)
    for name, field in marked.items():
        marker = getattr(typing.get_origin(field), "_name", None)
        if marker == "NotRequired":
            required.discard(name)
        elif marker == "Required":
            required.add(name)
    return sorted(required), fields


def _hints(obj: Any, *, include_extras: bool = False) -> dict[str, Any]:
    """Resolved type hints, or none when they cannot be resolved (a name not importable at
    registration, ``X | Y`` on Python 3.9): such a handler is described as taking any JSON."""
    try:
        return typing.get_type_hints(obj, include_extras=include_extras)
    except Exception:
        return {}


def _first_parameter(func: Callable[..., Any]) -> str | None:
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    return parameters[0].name if parameters else None


def _is_named(hint: Any) -> bool:
    return isinstance(hint, type) and (
        dataclasses.is_dataclass(hint) or _is_typeddict(hint) or _is_pydantic_model(hint)
    )


def _is_typeddict(hint: type) -> bool:
    # typing.is_typeddict is 3.10+; a TypedDict class is a dict subclass with these attributes.
    return issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def _is_pydantic_model(hint: Any) -> bool:
    # Looked up, not imported: a program whose hints are pydantic models has imported it already.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(hint, type) and issubclass(hint, pydantic.BaseModel)
