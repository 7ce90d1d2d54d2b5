//! JSON Schema (draft 2020-12, the subset contracts use) to Python types, for `--lang py`. Pure.
//!
//! A mapping of each [`Shape`] a schema can have, as [`super::types`] is for TypeScript, with the same
//! rule: anything it does not know becomes `Any`, a looser type, never a wrong one. Python has no
//! anonymous object types, so an object with properties becomes a named `TypedDict` ([`Def`]), named after
//! where it sits (`ListResult`'s property `todos` holds `ListResultTodosItem`); [`Mapper::defs`] lists
//! them each after the ones it uses. Unions are written `A | B` in annotations and `Union[A, B]` where
//! Python evaluates them (type aliases, on Python 3.9).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::shape::{Array, Object, Shape, Type};
use super::types::pascal_case;

/// A Python type, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyType {
    Any,
    /// No value: the schema `false`, or a union of nothing.
    Never,
    None,
    /// `int`, `float`, `str`, `bool`.
    Builtin(&'static str),
    /// A `TypedDict` or alias of the module.
    Named(String),
    List(Box<PyType>),
    Tuple(Vec<PyType>),
    /// `dict[str, V]`.
    Dict(Box<PyType>),
    /// Python literals, as written: `"red"`, `3`, `True`.
    Literal(Vec<String>),
    Union(Vec<PyType>),
}

/// One key of a `TypedDict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub key: String,
    pub ty: PyType,
    pub required: bool,
}

/// A named type of the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Def {
    TypedDict { name: String, fields: Vec<Field> },
    Alias { name: String, ty: PyType },
}

impl Def {
    pub fn name(&self) -> &str {
        match self {
            Def::TypedDict { name, .. } | Def::Alias { name, .. } => name,
        }
    }
}

/// The names taken in a module: asking for one already taken gives it a number (`TagData2`).
#[derive(Debug, Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// Names already in use (imports, builtins), never given out.
    pub fn new(reserved: &[&str]) -> Self {
        Names {
            taken: reserved.iter().map(|name| (*name).to_owned()).collect(),
        }
    }

    /// `wanted` if free, else `wanted2`, `wanted3`, …; taken from now on.
    pub fn claim(&mut self, wanted: &str) -> String {
        let mut name = wanted.to_owned();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{wanted}{n}");
            n += 1;
        }
        name
    }
}

/// Maps the schemas of one method; the `TypedDict`s and aliases it makes go to `defs`.
pub struct Mapper<'a> {
    pub names: &'a mut Names,
    pub defs: Vec<Def>,
    /// `#/$defs/<key>` → the name that entry got.
    refs: HashMap<String, String>,
}

impl<'a> Mapper<'a> {
    pub fn new(names: &'a mut Names) -> Self {
        Mapper {
            names,
            defs: Vec::new(),
            refs: HashMap::new(),
        }
    }

    /// Names `$defs` entry `key` `name` (already claimed), so that `$ref`s to it resolve; define it later.
    pub fn name_ref(&mut self, key: &str, name: &str) {
        self.refs.insert(key.to_owned(), name.to_owned());
    }

    /// Defines `name` (already claimed) as the type of `schema`: a `TypedDict` when `schema` is an object
    /// with properties, else an alias.
    pub fn define(&mut self, name: &str, schema: &Value) {
        if let Some(object) = direct_object(schema) {
            self.typed_dict(name, &object);
        } else {
            let ty = self.type_of(schema, name);
            self.defs.push(Def::Alias {
                name: name.to_owned(),
                ty,
            });
        }
    }

    /// The type of values that fit `schema`; an object in it is named `path` (claimed here).
    pub fn type_of(&mut self, schema: &Value, path: &str) -> PyType {
        match Shape::of(schema) {
            Shape::Any => PyType::Any,
            Shape::Never => PyType::Never,
            Shape::Ref(key) => self
                .refs
                .get(key)
                .map_or(PyType::Any, |name| PyType::Named(name.clone())),
            Shape::Const(value) => literal(value),
            Shape::Enum(values) => union(values.iter().map(literal).collect()),
            Shape::OneOf(members) => union(self.numbered(members, &format!("{path}Option"))),
            // Python has no intersection: one member is itself, more are anything.
            Shape::AllOf([only]) => self.type_of(only, path),
            Shape::AllOf(_) => PyType::Any,
            Shape::Type(ty) => self.of_type(&ty, path),
            Shape::Types(types) => {
                let members = types
                    .iter()
                    .map(|ty| match ty {
                        Type::Object(_) => self.of_type(ty, &format!("{path}Object")),
                        _ => self.of_type(ty, path),
                    })
                    .collect();
                union(members)
            }
        }
    }

    /// The types of `schemas`, the objects in each named `path` and its place from 1 (`…Option1`).
    fn numbered(&mut self, schemas: &[Value], path: &str) -> Vec<PyType> {
        schemas
            .iter()
            .enumerate()
            .map(|(i, schema)| self.type_of(schema, &format!("{path}{}", i + 1)))
            .collect()
    }

    fn of_type(&mut self, ty: &Type, path: &str) -> PyType {
        match ty {
            Type::Null => PyType::None,
            Type::Boolean => PyType::Builtin("bool"),
            Type::String => PyType::Builtin("str"),
            Type::Integer => PyType::Builtin("int"),
            Type::Number => PyType::Builtin("float"),
            Type::Array(array) => self.array(array, path),
            Type::Object(object) => self.object(object, path),
            Type::Other => PyType::Any,
        }
    }

    fn array(&mut self, array: &Array, path: &str) -> PyType {
        match array {
            Array::Tuple(prefix) => PyType::Tuple(self.numbered(prefix, &format!("{path}Item"))),
            Array::List(item) => {
                let item = match item {
                    Some(item) => self.type_of(item, &format!("{path}Item")),
                    None => PyType::Any,
                };
                PyType::List(Box::new(item))
            }
        }
    }

    fn object(&mut self, object: &Object, path: &str) -> PyType {
        if !object.properties.is_empty() {
            let name = self.names.claim(path);
            self.typed_dict(&name, object);
            return PyType::Named(name);
        }
        // No properties: a mapping, its values typed by `additionalProperties` (none allowed by `false`).
        let value = match object.additional {
            None => PyType::Any,
            Some(extra) => self.type_of(extra, &format!("{path}Value")),
        };
        PyType::Dict(Box::new(value))
    }

    /// A `TypedDict` of `object`'s properties, after the types its fields use. Extra keys
    /// (`additionalProperties`) have no place in a `TypedDict` and are left untyped.
    fn typed_dict(&mut self, name: &str, object: &Object) {
        let fields = object
            .properties
            .iter()
            .map(|property| Field {
                key: property.key.to_owned(),
                ty: self.type_of(property.schema, &format!("{name}{}", pascal_case(property.key))),
                required: property.required,
            })
            .collect();
        self.defs.push(Def::TypedDict {
            name: name.to_owned(),
            fields,
        });
    }
}

/// `schema` when it is an object with properties (or the one member of an `allOf` that is), which
/// becomes a `TypedDict` under the name being defined rather than an alias of one. Only a schema that
/// says so plainly: one that holds a `$ref`, `const`, `enum`, `oneOf` or `anyOf` (even one of the wrong
/// JSON type, which [`Shape`] passes over), or a `type` that is no name, is defined as an alias.
fn direct_object(schema: &Value) -> Option<Object<'_>> {
    let map = schema.as_object()?;
    if ["$ref", "const", "enum", "oneOf", "anyOf"]
        .iter()
        .any(|key| map.contains_key(*key))
    {
        return None;
    }
    match Shape::of(schema) {
        Shape::AllOf([only]) => direct_object(only),
        Shape::Type(Type::Object(object))
            if !object.properties.is_empty() && map.get("type").is_none_or(Value::is_string) =>
        {
            Some(object)
        }
        _ => None,
    }
}

/// A JSON value as a Python literal type; values `Literal` cannot hold become their type.
fn literal(value: &Value) -> PyType {
    match value {
        Value::Null => PyType::None,
        Value::Bool(b) => PyType::Literal(vec![if *b { "True" } else { "False" }.to_owned()]),
        Value::Number(n) if n.is_i64() || n.is_u64() => PyType::Literal(vec![n.to_string()]),
        Value::Number(_) => PyType::Builtin("float"),
        Value::String(s) => PyType::Literal(vec![py_str(s)]),
        _ => PyType::Any,
    }
}

/// A union, simplified: nested unions flattened, literals merged into one `Literal`, duplicates
/// dropped, `None` last; `Any` if a member is; a single member is itself.
pub fn union(members: Vec<PyType>) -> PyType {
    let mut flat = Vec::new();
    let mut literals: Vec<String> = Vec::new();
    let mut literal_at = None;
    let mut none = false;
    let mut pending = members;
    pending.reverse();
    while let Some(member) = pending.pop() {
        match member {
            PyType::Union(inner) => pending.extend(inner.into_iter().rev()),
            PyType::Any => return PyType::Any,
            PyType::Never => {}
            PyType::None => none = true,
            PyType::Literal(values) => {
                literal_at.get_or_insert(flat.len());
                for value in values {
                    if !literals.contains(&value) {
                        literals.push(value);
                    }
                }
            }
            other => {
                if !flat.contains(&other) {
                    flat.push(other);
                }
            }
        }
    }
    if let Some(at) = literal_at {
        flat.insert(at, PyType::Literal(literals));
    }
    if none {
        flat.push(PyType::None);
    }
    match flat.len() {
        0 => PyType::Never,
        1 => flat.remove(0),
        _ => PyType::Union(flat),
    }
}

impl PyType {
    /// Whether `None` is a value of this type: a method whose `data` admits it may be called without.
    pub fn admits_none(&self) -> bool {
        match self {
            PyType::Any | PyType::None => true,
            PyType::Union(members) => members.iter().any(PyType::admits_none),
            _ => false,
        }
    }

    /// Whether the type is one name or word, nothing to split or hoist.
    pub fn is_atom(&self) -> bool {
        matches!(
            self,
            PyType::Any | PyType::Never | PyType::None | PyType::Builtin(_) | PyType::Named(_)
        )
    }

    /// The type as an annotation (read only by type checkers, under `from __future__ import
    /// annotations`): unions as `A | B`.
    pub fn annotation(&self) -> String {
        self.render(&mut |name| name.to_owned(), false)
    }

    /// The type where Python evaluates it (an alias's value): unions as `Union[A, B]` (Python 3.9 has no
    /// `|` between types), and a name `defined` does not know yet quoted, a forward reference.
    pub fn runtime(&self, defined: &dyn Fn(&str) -> bool) -> String {
        self.render(
            &mut |name| if defined(name) { name.to_owned() } else { py_str(name) },
            true,
        )
    }

    fn render(&self, name: &mut dyn FnMut(&str) -> String, runtime: bool) -> String {
        match self {
            PyType::Any => "Any".to_owned(),
            PyType::Never => "NoReturn".to_owned(),
            PyType::None => "None".to_owned(),
            PyType::Builtin(builtin) => (*builtin).to_owned(),
            PyType::Named(named) => name(named),
            PyType::List(item) => format!("list[{}]", item.render(name, runtime)),
            PyType::Tuple(items) if items.is_empty() => "tuple[()]".to_owned(),
            PyType::Tuple(items) => format!("tuple[{}]", join(items, name, runtime, ", ")),
            PyType::Dict(value) => format!("dict[str, {}]", value.render(name, runtime)),
            PyType::Literal(values) => format!("Literal[{}]", values.join(", ")),
            PyType::Union(members) if runtime => format!("Union[{}]", join(members, name, true, ", ")),
            PyType::Union(members) => join(members, name, false, " | "),
        }
    }

    /// Calls `each` on this type and every type inside it.
    pub fn visit(&self, each: &mut dyn FnMut(&PyType)) {
        each(self);
        match self {
            PyType::List(inner) | PyType::Dict(inner) => inner.visit(each),
            PyType::Tuple(members) | PyType::Union(members) => members.iter().for_each(|m| m.visit(each)),
            _ => {}
        }
    }
}

fn join(types: &[PyType], name: &mut dyn FnMut(&str) -> String, runtime: bool, by: &str) -> String {
    types
        .iter()
        .map(|ty| ty.render(name, runtime))
        .collect::<Vec<_>>()
        .join(by)
}

/// A Python string literal, quoted as `ruff format` leaves it: double quotes unless the text holds more
/// double quotes than single ones; control characters escaped (hex digits in lower case).
pub fn py_str(text: &str) -> String {
    let doubles = text.matches('"').count();
    let singles = text.matches('\'').count();
    let quote = if doubles > singles { '\'' } else { '"' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            // Line and paragraph separators, and other characters Python's tokenizer or an editor could
            // take for the end of a line.
            '\u{85}' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's keywords: not a method name, nor a `TypedDict` key in class syntax.
pub const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Whether `name` is an ASCII Python identifier and no keyword.
pub fn is_py_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
}

/// A method name as a Python method name: itself when it is a lower-case identifier, else its words in
/// snake_case (`listItems`, `list-items` → `list_items`), `call_…` when that is no identifier.
pub fn method_name(method: &str) -> String {
    let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if is_py_identifier(method) && !method.starts_with('_') && method.chars().all(lower) {
        return method.to_owned();
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut previous: Option<char> = None;
    for c in method.chars() {
        if !c.is_ascii_alphanumeric() {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
        } else {
            // A new word at an upper-case letter after a lower-case one or a digit (`listItems`).
            if c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            }
            word.push(c.to_ascii_lowercase());
        }
        previous = Some(c);
    }
    words.extend((!word.is_empty()).then_some(word));
    let snake = words.join("_");
    if is_py_identifier(&snake) {
        snake
    } else {
        format!("call_{snake}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The annotation of `schema` and the definitions mapping it made, as `name: fields` / `name = type`.
    fn py(schema: Value) -> (String, Vec<String>) {
        let mut names = Names::new(&["Any"]);
        let mut mapper = Mapper::new(&mut names);
        let ty = mapper.type_of(&schema, "Tag");
        (ty.annotation(), mapper.defs.iter().map(describe).collect())
    }

    fn describe(def: &Def) -> String {
        match def {
            Def::TypedDict { name, fields } => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}{}: {}", f.key, if f.required { "" } else { "?" }, f.ty.annotation()))
                    .collect();
                format!("{name}({})", fields.join(", "))
            }
            Def::Alias { name, ty } => format!("{name} = {}", ty.runtime(&|_| true)),
        }
    }

    fn ty(schema: Value) -> String {
        let (ty, defs) = py(schema);
        assert!(defs.is_empty(), "{defs:?}");
        ty
    }

    #[test]
    fn scalars_and_any() {
        assert_eq!(ty(json!({})), "Any");
        assert_eq!(ty(json!(true)), "Any");
        assert_eq!(ty(json!(false)), "NoReturn");
        assert_eq!(ty(json!({"title": "AnyValue"})), "Any");
        assert_eq!(ty(json!({"type": "integer"})), "int");
        assert_eq!(ty(json!({"type": "number"})), "float");
        assert_eq!(ty(json!({"type": "boolean"})), "bool");
        assert_eq!(ty(json!({"type": ["string", "null"]})), "str | None");
        assert_eq!(ty(json!({"type": ["null", "string"]})), "str | None");
        assert_eq!(ty(json!({"type": "teapot"})), "Any");
    }

    #[test]
    fn objects_become_typed_dicts_with_not_required_keys() {
        let (ty, defs) = py(json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "note-x": {"type": "string"}},
            "required": ["a"],
            "additionalProperties": false
        }));
        assert_eq!(ty, "Tag");
        assert_eq!(defs, ["Tag(a: int, note-x?: str)"]);
    }

    #[test]
    fn nested_objects_are_named_by_where_they_sit_and_come_first() {
        let (ty, defs) = py(json!({
            "type": "object",
            "properties": {
                "todos": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
                "owner": {"properties": {"name": {"type": "string"}}, "required": ["name"]}
            },
            "required": ["todos"]
        }));
        assert_eq!(ty, "Tag");
        assert_eq!(
            defs,
            [
                "TagTodosItem(id?: int)",
                "TagOwner(name: str)",
                "Tag(todos: list[TagTodosItem], owner?: TagOwner)"
            ]
        );
    }

    #[test]
    fn objects_without_properties_are_mappings() {
        assert_eq!(ty(json!({"type": "object"})), "dict[str, Any]");
        assert_eq!(ty(json!({"type": "object", "properties": {}})), "dict[str, Any]");
        assert_eq!(
            ty(json!({"type": "object", "additionalProperties": {"type": "boolean"}})),
            "dict[str, bool]"
        );
        assert_eq!(
            ty(json!({"type": "object", "additionalProperties": false})),
            "dict[str, NoReturn]"
        );
    }

    #[test]
    fn arrays_enums_and_unions() {
        assert_eq!(
            ty(json!({"type": "array", "items": {"enum": ["a", 1]}})),
            r#"list[Literal["a", 1]]"#
        );
        assert_eq!(ty(json!({"type": "array"})), "list[Any]");
        assert_eq!(
            ty(json!({"prefixItems": [{"type": "string"}, {"const": null}], "type": "array"})),
            "tuple[str, None]"
        );
        assert_eq!(
            ty(json!({"oneOf": [{"const": "tagged"}, {"type": "boolean"}]})),
            r#"Literal["tagged"] | bool"#
        );
        assert_eq!(
            ty(json!({"enum": ["red", null, 2, true, 1.5, {"a": 1}]})),
            "Any",
            "an object in an enum: any value"
        );
        assert_eq!(
            ty(json!({"enum": ["red", null, 2, true, 1.5]})),
            r#"Literal["red", 2, True] | float | None"#
        );
        assert_eq!(
            ty(json!({"anyOf": [{"const": "a"}, {"type": "integer"}, {"enum": ["b", "a"]}, {"type": "integer"}]})),
            r#"Literal["a", "b"] | int"#
        );
        assert_eq!(ty(json!({"anyOf": [{"type": "string"}, {}]})), "Any");
        assert_eq!(ty(json!({"oneOf": []})), "NoReturn");
        assert_eq!(ty(json!({"allOf": [{"type": "string"}]})), "str");
        assert_eq!(ty(json!({"allOf": [{"type": "string"}, {"minLength": 1}]})), "Any");
    }

    #[test]
    fn union_members_and_nullable_objects_are_named_apart() {
        let (ty, defs) = py(json!({"anyOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "string"}}},
            {"type": "null"}
        ]}));
        assert_eq!(ty, "TagOption1 | TagOption2 | None");
        assert_eq!(defs, ["TagOption1(a?: str)", "TagOption2(b?: str)"]);
        let (ty, defs) = py(json!({"type": ["object", "null"], "properties": {"a": {"type": "string"}}}));
        assert_eq!(ty, "TagObject | None");
        assert_eq!(defs, ["TagObject(a?: str)"]);
    }

    #[test]
    fn refs_name_defs_and_unknown_refs_are_any() {
        let mut names = Names::new(&[]);
        let mut mapper = Mapper::new(&mut names);
        mapper.name_ref("todo_item", "TagTodoItem");
        assert_eq!(
            mapper
                .type_of(&json!({"$ref": "#/$defs/todo_item"}), "Tag")
                .annotation(),
            "TagTodoItem"
        );
        assert_eq!(
            mapper.type_of(&json!({"$ref": "#/$defs/other"}), "Tag").annotation(),
            "Any"
        );
        assert_eq!(
            mapper
                .type_of(&json!({"$ref": "https://elsewhere"}), "Tag")
                .annotation(),
            "Any"
        );
    }

    #[test]
    fn define_makes_a_typed_dict_or_an_alias() {
        let mut names = Names::new(&[]);
        let mut mapper = Mapper::new(&mut names);
        mapper.define(
            "AddData",
            &json!({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}]}),
        );
        mapper.define("CountData", &json!({"title": "AnyValue"}));
        mapper.define(
            "FindData",
            &json!({"type": ["object", "null"], "properties": {"a": {"type": "string"}}}),
        );
        let defs: Vec<String> = mapper.defs.iter().map(describe).collect();
        assert_eq!(
            defs,
            [
                "AddData(a: int)",
                "CountData = Any",
                "FindDataObject(a?: str)",
                "FindData = Union[FindDataObject, None]"
            ]
        );
    }

    #[test]
    fn runtime_unions_and_forward_references() {
        let ty = union(vec![
            PyType::List(Box::new(PyType::Named("Later".into()))),
            PyType::Named("Known".into()),
            PyType::None,
        ]);
        assert_eq!(ty.annotation(), "list[Later] | Known | None");
        assert_eq!(
            ty.runtime(&|name| name == "Known"),
            r#"Union[list["Later"], Known, None]"#
        );
    }

    #[test]
    fn none_is_admitted_by_any_none_and_unions_with_none() {
        for (schema, admits) in [
            (json!({}), true),
            (json!({"type": "null"}), true),
            (json!({"anyOf": [{"type": "string"}, {"const": null}]}), true),
            (json!({"enum": ["a", null]}), true),
            (json!({"type": "object", "properties": {"a": {"type": "null"}}}), false),
            (json!({"type": "array", "items": {"type": "null"}}), false),
            (json!({"type": "string"}), false),
            (json!(false), false),
        ] {
            let mut names = Names::new(&[]);
            let ty = Mapper::new(&mut names).type_of(&schema, "Tag");
            assert_eq!(ty.admits_none(), admits, "{schema}");
        }
    }

    #[test]
    fn strings_are_quoted_as_ruff_format_leaves_them() {
        assert_eq!(py_str("red"), r#""red""#);
        assert_eq!(py_str(r#"say "hi""#), r#"'say "hi"'"#);
        assert_eq!(py_str(r#"it's "x""#), r#"'it\'s "x"'"#);
        assert_eq!(py_str(r#"a"b'c"#), r#""a\"b'c""#);
        assert_eq!(
            py_str("back\\slash\nline\u{1b}\u{2028}é"),
            r#""back\\slash\nline\x1b\u2028é""#
        );
    }

    #[test]
    fn names_clash_into_numbers() {
        let mut names = Names::new(&["Any"]);
        assert_eq!(names.claim("Any"), "Any2");
        assert_eq!(names.claim("TagData"), "TagData");
        assert_eq!(names.claim("TagData"), "TagData2");
        assert_eq!(names.claim("TagData"), "TagData3");
    }

    #[test]
    fn method_names_become_python_method_names() {
        assert_eq!(method_name("count"), "count");
        assert_eq!(method_name("peer_count"), "peer_count");
        assert_eq!(method_name("listItems"), "list_items");
        assert_eq!(method_name("list-items"), "list_items");
        assert_eq!(method_name("user.get"), "user_get");
        assert_eq!(method_name("HTTPGet"), "httpget");
        assert_eq!(method_name("import"), "call_import");
        assert_eq!(method_name("2fa"), "call_2fa");
        assert_eq!(method_name("été"), "t");
    }
}
