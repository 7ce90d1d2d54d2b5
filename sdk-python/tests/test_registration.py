"""The decorator and the registry, without a network."""

from __future__ import annotations

import functools

import modproxy_sdk
import pytest
from modproxy_sdk import Backend, method


def test_bare_decorator_returns_the_function_unchanged():
    app = Backend()

    def add(data):
        return data

    assert app.method(add) is add
    assert app.methods == ["add"]


def test_named_decorator_returns_the_function_unchanged():
    app = Backend()

    async def get_user(data, head):
        return data

    assert app.method(name="user.get")(get_user) is get_user
    assert app.methods == ["user.get"]


def test_module_level_method_registers_with_the_default_backend():
    @method
    def registry_probe(data):
        return data

    @method(name="registry.probe.named")
    def named_probe(data, head):
        return data

    assert callable(registry_probe)
    assert callable(named_probe)
    assert {"registry_probe", "registry.probe.named"} <= set(modproxy_sdk._default.methods)


def test_how_a_handler_is_called_is_read_from_its_signature():
    app = Backend()
    app.method(lambda data: data, name="one")
    app.method(lambda data, head: data, name="two")
    app.method(lambda data, head=None: data, name="two_optional")
    app.method(lambda *args: args, name="variadic")
    app.method(functools.partial(lambda prefix, data: data, "p"), name="partial")

    async def coroutine(data, head):
        return data

    class Callable:
        async def __call__(self, data):
            return data

    app.method(coroutine)
    app.method(Callable(), name="async_object")
    seen = {m.name: (m.takes_head, m.is_async) for m in app._methods.values()}
    assert seen == {
        "one": (False, False),
        "two": (True, False),
        "two_optional": (True, False),
        "variadic": (True, False),
        "partial": (False, False),
        "coroutine": (True, True),
        "async_object": (False, True),
    }


@pytest.mark.parametrize(
    "handler",
    [lambda: None, lambda data, head, extra: None, lambda *, data: None],
    ids=["no-arguments", "three-arguments", "keyword-only"],
)
def test_a_handler_must_take_data_or_data_and_head(handler):
    with pytest.raises(TypeError, match=r"takes \(data\) or \(data, head\)"):
        Backend().method(handler, name="bad")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("_ping", "reserved for the protocol"),
        ("_pipeline", "reserved for the protocol"),
        ("_mine", "reserved for the protocol"),
        ("", "must not be empty"),
    ],
)
def test_empty_and_reserved_names_are_refused(name, needle):
    app = Backend()
    with pytest.raises(ValueError, match=needle):
        app.method(name=name)(lambda data: data)
    assert app.methods == []


def test_a_name_is_registered_once():
    app = Backend()
    first = app.method(name="x")(lambda data: 1)
    with pytest.raises(ValueError, match="'x' is already registered"):
        app.method(name="x")(lambda data, head: 2)
    assert app._methods["x"].func is first


def test_method_error_carries_code_and_message():
    error = modproxy_sdk.MethodError("not_found", "no todo 3")
    assert (error.code, error.message) == ("not_found", "no todo 3")
    assert str(error) == "not_found: no todo 3"
    assert error.args == ("not_found", "no todo 3")
    assert isinstance(error, Exception)
