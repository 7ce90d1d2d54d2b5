//! A contract document to a typed Python client for backend-to-backend calls (`--lang py`). Pure.
//!
//! One `TypedDict` or alias per schema type ([`super::py_types`]), then a class named after the module
//! (`todo-node` → `TodoNode`) that wraps a `modproxy_sdk.Client`, one typed method per contract method,
//! and its twin for `AsyncClient` (`AsyncTodoNode`). The source passes `mypy --strict` and runs on
//! Python 3.9 and later (the SDK's floor); it is written as `ruff format` leaves it, in lines of at most
//! 88 columns (ruff's default): a line that would be longer is split at its brackets with a trailing
//! comma, which keeps it split whatever the line length, or its type becomes an alias of its own.

use std::collections::HashSet;

use serde_json::Value;

use super::emit::{function_name, methods};
use super::py_types::{is_py_identifier, method_name, py_str, Def, Field, Mapper, Names, PyType};
use super::types::pascal_case;

/// The longest line written, in characters.
const WIDTH: usize = 88;

/// Names the module imports, never given to a type.
const RESERVED: &[&str] = &[
    "annotations",
    "TYPE_CHECKING",
    "Any",
    "Literal",
    "NoReturn",
    "NotRequired",
    "TypedDict",
    "Union",
    "cast",
    "AsyncClient",
    "Client",
];

/// One method of the classes.
struct Call {
    /// The name the backend knows it by.
    name: String,
    /// Its Python name.
    function: String,
    doc: Option<String>,
    data: String,
    result: String,
    /// `data` admits `None`, so the method may be called without it.
    optional: bool,
    /// What the result is to the type checker.
    returns: Returns,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Returns {
    /// `Any`: nothing to cast.
    Any,
    /// No value (the schema `false`): the call can only raise.
    Never,
    /// A type the reply is cast to.
    Typed,
}

/// What the body uses from `typing`.
#[derive(Default)]
struct Uses {
    any: bool,
    literal: bool,
    never: bool,
    not_required: bool,
    typed_dict: bool,
    union: bool,
    cast: bool,
}

/// The client's Python source for `module`, or why the document cannot give one.
pub fn client(document: &Value, module: &str) -> Result<String, String> {
    let mut names = Names::new(RESERVED);
    let class = names.claim(&class_name(module));
    let async_class = names.claim(&format!("Async{class}"));
    let mut functions = Names::new(&[]);
    let mut defs = Vec::new();
    let mut calls = Vec::new();
    for method in methods(document)? {
        let name = method["name"].as_str().ok_or("a method without a name")?;
        let prefix = type_prefix(name);
        let data = names.claim(&format!("{prefix}Data"));
        let result = names.claim(&format!("{prefix}Result"));
        let mut mapper = Mapper::new(&mut names);
        let mut entries = Vec::new();
        for schema in [&method["data"], &method["result"], method] {
            if let Some(schema_defs) = schema.get("$defs").and_then(Value::as_object) {
                for (key, def) in schema_defs {
                    let def_name = mapper.names.claim(&format!("{prefix}{}", pascal_case(key)));
                    mapper.name_ref(key, &def_name);
                    entries.push((def_name, def));
                }
            }
        }
        for (def_name, def) in &entries {
            mapper.define(def_name, def);
        }
        let any = Value::Bool(true);
        mapper.define(&data, method.get("data").unwrap_or(&any));
        mapper.define(&result, method.get("result").unwrap_or(&any));
        let alias_of = |name: &str| {
            mapper.defs.iter().find_map(|def| match def {
                Def::Alias { name: n, ty } if n == name => Some(ty.clone()),
                _ => None,
            })
        };
        let optional = alias_of(&data).is_some_and(|ty| ty.admits_none());
        let returns = match alias_of(&result) {
            Some(PyType::Any) => Returns::Any,
            Some(PyType::Never) => Returns::Never,
            _ => Returns::Typed,
        };
        defs.extend(mapper.defs);
        calls.push(Call {
            name: name.to_owned(),
            function: functions.claim(&method_name(name)),
            doc: method["doc"].as_str().map(str::to_owned),
            data,
            result,
            optional,
            returns,
        });
    }

    let mut uses = Uses::default();
    let mut defined = HashSet::new();
    let mut statements = Vec::new();
    for def in defs {
        match def {
            Def::Alias { name, ty } => statements.push(alias(&name, &ty, &mut defined, &mut uses)),
            Def::TypedDict { name, fields } => {
                let (hoisted, typed_dict) = typed_dict(&name, fields, &mut names, &mut defined, &mut uses);
                statements.extend(hoisted);
                statements.push(typed_dict);
            }
        }
    }
    uses.cast = calls.iter().any(|call| call.returns == Returns::Typed);
    statements.push(class_source(&class, "Client", module, &calls, false));
    statements.push(class_source(&async_class, "AsyncClient", module, &calls, true));

    let mut out = String::new();
    let command = format!(
        "Generated by `modproxy client --module {} --lang py` from the module's _describe document. Do not edit.",
        module.replace(['\n', '\r'], " ")
    );
    for line in wrap(&command, WIDTH - 2, WIDTH - 2) {
        out.push_str(&format!("# {line}\n"));
    }
    out.push_str(&docstring(
        &format!(
            "Typed calls to the module ``{module}``: :class:`{class}` wraps a :class:`modproxy_sdk.Client` \
             connected to it, :class:`{async_class}` an :class:`modproxy_sdk.AsyncClient`."
        ),
        0,
    ));
    out.push_str("\nfrom __future__ import annotations\n\n");
    let typing: Vec<&str> = [
        (uses.not_required, "TYPE_CHECKING"),
        (uses.any, "Any"),
        (uses.literal, "Literal"),
        (uses.never, "NoReturn"),
        (uses.typed_dict, "TypedDict"),
        (uses.union, "Union"),
        (uses.cast, "cast"),
    ]
    .into_iter()
    .filter_map(|(used, name)| used.then_some(name))
    .collect();
    if !typing.is_empty() {
        out.push_str(&format!("from typing import {}\n\n", typing.join(", ")));
    }
    out.push_str("from modproxy_sdk import AsyncClient, Client\n");
    if uses.not_required {
        // `NotRequired` is in `typing` from Python 3.11 on; annotations are not evaluated, so the type
        // checker's copy serves.
        statements.insert(
            0,
            "if TYPE_CHECKING:\n    from typing_extensions import NotRequired\n".to_owned(),
        );
    }
    // After the imports one blank line, two before a class (what `ruff check`'s isort and `ruff format`
    // want); between statements two.
    let first_is_class = statements.first().is_some_and(|s| s.starts_with("class "));
    out.push_str(if first_is_class { "\n\n" } else { "\n" });
    out.push_str(&statements.join("\n\n"));
    Ok(out)
}

/// The class name for `module`: `todo-node` → `TodoNode`.
fn class_name(module: &str) -> String {
    let name = pascal_case(module);
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name
    } else {
        format!("Module{name}")
    }
}

/// What a method's type names begin with: the browser client's (`list-items` → `ListItems`).
fn type_prefix(method: &str) -> String {
    let prefix = pascal_case(&function_name(method));
    if prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
        prefix
    } else {
        format!("Method{prefix}")
    }
}

/// `name = type`, split at its brackets if the line would be too long.
fn alias(name: &str, ty: &PyType, defined: &mut HashSet<String>, uses: &mut Uses) -> String {
    note_uses(ty, uses, true);
    let known = |n: &str| defined.contains(n);
    let lead = name.chars().count() + 3;
    let source = format!("{name} = {}\n", split(ty, lead, 0, 0, &known));
    defined.insert(name.to_owned());
    source
}

/// A `TypedDict`, and the aliases hoisted out of it for lines that would be too long. Class syntax when
/// every key can be written bare; else the functional syntax, whose types are strings (not evaluated).
fn typed_dict(
    name: &str,
    fields: Vec<Field>,
    names: &mut Names,
    defined: &mut HashSet<String>,
    uses: &mut Uses,
) -> (Vec<String>, String) {
    uses.typed_dict = true;
    // Keys `__x` would be mangled to `_Name__x` in a class body (`__x__` would not).
    let mangled = |key: &str| key.starts_with("__") && !key.ends_with("__");
    let bare = fields.iter().all(|f| is_py_identifier(&f.key) && !mangled(&f.key));
    let mut hoisted = Vec::new();
    let mut entries = Vec::new();
    for Field { key, mut ty, required } in fields {
        let line = |ty: &PyType| {
            let annotation = annotation(ty, required);
            if bare {
                format!("    {key}: {annotation}")
            } else {
                format!("        {}: {},", py_str(&key), py_str(&annotation))
            }
        };
        if line(&ty).chars().count() > WIDTH && !ty.is_atom() {
            let alias_name = names.claim(&format!("{name}{}", pascal_case(&key)));
            hoisted.push(alias(&alias_name, &ty, defined, uses));
            ty = PyType::Named(alias_name);
        }
        note_uses(&ty, uses, false);
        uses.not_required |= !required;
        entries.push(line(&ty));
    }
    defined.insert(name.to_owned());
    let source = if bare {
        format!("class {name}(TypedDict):\n{}\n", entries.join("\n"))
    } else {
        let quoted = py_str(name);
        let one_line: Vec<&str> = entries.iter().map(|e| e.trim().trim_end_matches(',')).collect();
        let one_line = format!("{name} = TypedDict({quoted}, {{{}}})", one_line.join(", "));
        if one_line.chars().count() <= WIDTH {
            format!("{one_line}\n")
        } else {
            format!(
                "{name} = TypedDict(\n    {quoted},\n    {{\n{}\n    }},\n)\n",
                entries.join("\n")
            )
        }
    };
    (hoisted, source)
}

fn annotation(ty: &PyType, required: bool) -> String {
    if required {
        ty.annotation()
    } else {
        format!("NotRequired[{}]", ty.annotation())
    }
}

fn note_uses(ty: &PyType, uses: &mut Uses, runtime: bool) {
    ty.visit(&mut |t| match t {
        PyType::Any => uses.any = true,
        PyType::Never => uses.never = true,
        PyType::Literal(_) => uses.literal = true,
        PyType::Union(_) if runtime => uses.union = true,
        _ => {}
    });
}

/// Part of a subscript as written: a type, or a word (`str` of `dict[str, V]`, a literal).
enum Part<'a> {
    Type(&'a PyType),
    Word(&'a str),
}

/// `ty` as written where Python evaluates it, starting `lead` columns into a line indented `indent`
/// and followed by `trail` columns. Too long, it is split as `ruff format` splits it: one part per line
/// with a trailing comma (which keeps it split), or a lone part on its own line without one (a comma
/// would make it a tuple).
fn split(ty: &PyType, lead: usize, indent: usize, trail: usize, defined: &dyn Fn(&str) -> bool) -> String {
    let one_line = ty.runtime(defined);
    if lead + one_line.chars().count() + trail <= WIDTH {
        return one_line;
    }
    let (head, parts): (&str, Vec<Part>) = match ty {
        PyType::List(item) => ("list", vec![Part::Type(item)]),
        PyType::Tuple(items) if !items.is_empty() => ("tuple", items.iter().map(Part::Type).collect()),
        PyType::Dict(value) => ("dict", vec![Part::Word("str"), Part::Type(value)]),
        PyType::Literal(values) => ("Literal", values.iter().map(|v| Part::Word(v)).collect()),
        PyType::Union(members) => ("Union", members.iter().map(Part::Type).collect()),
        _ => return one_line,
    };
    let inner = indent + 4;
    let pad = " ".repeat(inner);
    let comma = parts.len() > 1;
    let mut out = format!("{head}[\n");
    for part in parts {
        let text = match part {
            Part::Type(ty) => split(ty, inner, inner, usize::from(comma), defined),
            Part::Word(word) => word.to_owned(),
        };
        out.push_str(&format!("{pad}{text}{}\n", if comma { "," } else { "" }));
    }
    out.push_str(&" ".repeat(indent));
    out.push(']');
    out
}

/// The class wrapping `client` (`Client` or `AsyncClient`).
fn class_source(class: &str, client: &str, module: &str, calls: &[Call], asynchronous: bool) -> String {
    let mut out = format!("class {class}:\n");
    out.push_str(&docstring(
        &format!(
            "Calls to the module ``{module}``, typed from its contract, through a \
             :class:`modproxy_sdk.{client}` connected to it: to a backend of the module, or to the \
             proxy's raw-frame port with ``module=\"{module}\"``."
        ),
        4,
    ));
    out.push_str(&format!(
        "\n    def __init__(self, client: {client}) -> None:\n        self._client = client\n"
    ));
    let (def, await_) = if asynchronous {
        ("async def", "await ")
    } else {
        ("def", "")
    };
    for call in calls {
        let data = if call.optional {
            format!("data: {} | None = None", call.data)
        } else {
            format!("data: {}", call.data)
        };
        let result = &call.result;
        let head = format!("    {def} {}(self, {data}) -> {result}:", call.function);
        out.push('\n');
        if head.chars().count() <= WIDTH {
            out.push_str(&format!("{head}\n"));
        } else {
            out.push_str(&format!(
                "    {def} {}(\n        self,\n        {data},\n    ) -> {result}:\n",
                call.function
            ));
        }
        if let Some(doc) = call.doc.as_deref().filter(|doc| !doc.trim().is_empty()) {
            out.push_str(&docstring(doc, 8));
        }
        let quoted = py_str(&call.name);
        let invoke = format!("{await_}self._client.call({quoted}, data)");
        let invoke_split = |indent: usize, trail: &str| {
            let one_line = format!("{}{invoke}{trail}", " ".repeat(indent));
            if one_line.chars().count() <= WIDTH {
                one_line
            } else {
                let pad = " ".repeat(indent);
                format!("{pad}{await_}self._client.call(\n{pad}    {quoted},\n{pad}    data,\n{pad}){trail}")
            }
        };
        if call.returns == Returns::Any {
            let line = invoke_split(8, "");
            out.push_str(&format!("        return {}\n", line.trim_start()));
        } else if call.returns == Returns::Never {
            // A function typed `NoReturn` may not return, whatever the backend replies.
            let message = py_str(&format!(
                "{} replied, though its contract says it never does",
                call.name
            ));
            out.push_str(&format!(
                "{}\n        raise AssertionError({message})\n",
                invoke_split(8, "")
            ));
        } else {
            let one_line = format!("        return cast({result}, {invoke})");
            if one_line.chars().count() <= WIDTH {
                out.push_str(&format!("{one_line}\n"));
            } else {
                out.push_str(&format!(
                    "        return cast(\n            {result},\n{}\n        )\n",
                    invoke_split(12, ",")
                ));
            }
        }
    }
    out
}

/// A docstring at `indent`: one line if it fits, else wrapped at word boundaries with the closing quotes
/// on a line of their own.
fn docstring(text: &str, indent: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"");
    let pad = " ".repeat(indent);
    if indent + 3 + text.chars().count() + 3 <= WIDTH {
        // A docstring ending in a quote gets a space before the closing ones, as `ruff format` writes it.
        let space = if text.ends_with('"') { " " } else { "" };
        return format!("{pad}\"\"\"{text}{space}\"\"\"\n");
    }
    let lines = wrap(&text, WIDTH - indent - 3, WIDTH - indent);
    let mut out = format!("{pad}\"\"\"");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(&pad);
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("{pad}\"\"\"\n"));
    out
}

/// `text`'s words in lines of at most `first` characters, then `rest` (a longer word stands alone).
fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let room = if lines.is_empty() { first } else { rest };
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/contract/todo.json")).unwrap()
    }

    fn longest_line(source: &str) -> usize {
        source.lines().map(|line| line.chars().count()).max().unwrap_or(0)
    }

    #[test]
    fn one_typed_method_per_method_in_both_classes() {
        let py = client(&fixture(), "todo").unwrap();
        assert!(
            py.starts_with("# Generated by `modproxy client --module todo --lang py` from the module's _describe\n# document. Do not edit.\n"),
            "{py}"
        );
        assert!(
            py.contains("\nclass AddData(TypedDict):\n    a: int\n    b: int\n"),
            "{py}"
        );
        assert!(py.contains("\nAddResult = int\n"), "{py}");
        assert!(
            py.contains(
                "\nclass TagItem(TypedDict):\n    id: int\n    color: Literal[\"red\", \"green\", \"blue\"]\n    labels: NotRequired[list[str]]\n"
            ),
            "{py}"
        );
        assert!(
            py.contains("\nclass TagData(TypedDict):\n    item: TagItem\n    note: NotRequired[str | None]\n"),
            "{py}"
        );
        assert!(py.contains("\nTagResult = Union[Literal[\"tagged\"], bool]\n"), "{py}");
        assert!(py.contains("\nclass Todo:\n"), "{py}");
        assert!(py.contains("\nclass AsyncTodo:\n"), "{py}");
        assert!(
            py.contains(
                "    def add(self, data: AddData) -> AddResult:\n        \"\"\"Adds two integers.\"\"\"\n        return cast(AddResult, self._client.call(\"add\", data))\n"
            ),
            "{py}"
        );
        assert!(
            py.contains("    async def tag(self, data: TagData) -> TagResult:\n        return cast(TagResult, await self._client.call(\"tag\", data))\n"),
            "{py}"
        );
        // `data` that admits None may be left out; an `Any` result is not cast.
        assert!(
            py.contains("    def any(self, data: AnyData | None = None) -> AnyResult:\n        \"\"\"Takes and returns any JSON.\"\"\"\n        return self._client.call(\"any\", data)\n"),
            "{py}"
        );
        assert!(
            py.contains("from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union, cast\n"),
            "{py}"
        );
        assert!(py.contains("if TYPE_CHECKING:\n    from typing_extensions import NotRequired\n"));
        assert!(longest_line(&py) <= WIDTH, "{py}");
    }

    #[test]
    fn imports_only_what_the_types_use() {
        let document = json!({"methods": [{"name": "ping", "doc": null, "data": {}, "result": {}}]});
        let py = client(&document, "echo").unwrap();
        assert!(
            py.contains("from typing import Any\n\nfrom modproxy_sdk import AsyncClient, Client\n\nPingData = Any\n"),
            "{py}"
        );
        assert!(!py.contains("TYPE_CHECKING"), "{py}");
        let document = json!({"methods": [{"name": "ping", "data": {"type": "string"}, "result": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}]});
        let py = client(&document, "echo").unwrap();
        assert!(
            py.contains("from typing import TypedDict, cast\n\nfrom modproxy_sdk import AsyncClient, Client\n\nPingData = str\n"),
            "{py}"
        );
    }

    #[test]
    fn keys_that_are_no_identifiers_take_the_functional_syntax() {
        let document = json!({"methods": [{"name": "put", "data": {
            "type": "object",
            "properties": {"note-x": {"type": "string"}, "from": {"enum": ["a", "it's \"b\""]}},
            "required": ["from"]
        }}]});
        let py = client(&document, "todo").unwrap();
        assert!(
            py.contains(r#"PutData = TypedDict("PutData", {"note-x": "NotRequired[str]", "from": 'Literal["a", \'it\\\'s "b"\']'})"#)
                || py.contains("PutData = TypedDict(\n"),
            "{py}"
        );
        assert!(py.contains(r#"        "note-x": "NotRequired[str]","#), "{py}");
        assert!(longest_line(&py) <= WIDTH, "{py}");
    }

    #[test]
    fn long_lines_are_split_or_hoisted() {
        let colors: Vec<String> = (0..12).map(|i| format!("colour-number-{i}")).collect();
        let document = json!({"methods": [{
            "name": "a-method-with-a-name-long-enough-to-split-its-lines",
            "doc": "word ".repeat(40),
            "data": {"type": "object", "properties": {"colour": {"enum": colors}}, "required": ["colour"]},
            "result": {"type": "array", "items": {"enum": colors}}
        }]});
        let py = client(&document, "todo").unwrap();
        assert!(longest_line(&py) <= WIDTH, "{py}");
        // The field's enum became an alias of its own, split one literal a line.
        let prefix = "AMethodWithANameLongEnoughToSplitItsLines";
        assert!(
            py.contains(&format!("{prefix}DataColour = Literal[\n    \"colour-number-0\",\n")),
            "{py}"
        );
        assert!(py.contains(&format!("    colour: {prefix}DataColour\n")), "{py}");
        assert!(
            py.contains(&format!(
                "{prefix}Result = list[\n    Literal[\n        \"colour-number-0\",\n"
            )),
            "{py}"
        );
        assert!(py.contains("        self,\n        data: "), "{py}");
        assert!(py.contains("        return cast(\n            "), "{py}");
        assert!(
            py.contains("            self._client.call(\n                \"a-method"),
            "{py}"
        );
        assert!(py.contains("        \"\"\"word word"), "{py}");
    }

    #[test]
    fn class_names_come_from_the_module() {
        assert_eq!(class_name("todo-node"), "TodoNode");
        assert_eq!(class_name("todo_python"), "TodoPython");
        assert_eq!(class_name("2fa"), "Module2fa");
        assert_eq!(type_prefix("list-items"), "ListItems");
        assert_eq!(type_prefix("delete"), "CallDelete");
    }

    #[test]
    fn docstrings_wrap_and_escape() {
        assert_eq!(docstring("Says \"hi\"", 8), "        \"\"\"Says \"hi\" \"\"\"\n");
        assert_eq!(docstring("a\\b \"\"\"c", 0), "\"\"\"a\\\\b \\\"\\\"\\\"c\"\"\"\n");
        let long = docstring(&"word ".repeat(30), 4);
        assert!(long.starts_with("    \"\"\"word"), "{long}");
        assert!(long.ends_with("\n    \"\"\"\n"), "{long}");
        assert!(longest_line(&long) <= WIDTH, "{long}");
    }
}
