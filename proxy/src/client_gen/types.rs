//! JSON Schema (draft 2020-12, the subset contracts use) to TypeScript type expressions: a mapping of
//! each [`Shape`] a schema can have. Pure.
//!
//! Anything the mapping does not know becomes `unknown`: a looser type, never a wrong one.

use serde_json::Value;

use super::shape::{Array, Object, Shape, Type};

/// Turns schemas of one method into types; `#/$defs/X` becomes the named type `{prefix}X`.
pub struct TypeNamer<'a> {
    pub prefix: &'a str,
}

impl TypeNamer<'_> {
    /// The TypeScript type of values that fit `schema`.
    pub fn type_of(&self, schema: &Value) -> String {
        match Shape::of(schema) {
            Shape::Any => "unknown".to_owned(),
            Shape::Never => "never".to_owned(),
            Shape::Ref(key) => self.def_name(key),
            Shape::Const(value) => literal(value),
            Shape::Enum(values) => union(values.iter().map(literal).collect()),
            Shape::OneOf(members) => union(members.iter().map(|m| self.type_of(m)).collect()),
            Shape::AllOf([]) => "unknown".to_owned(),
            Shape::AllOf(members) => {
                let parts: Vec<String> = members.iter().map(|m| wrap(&self.type_of(m))).collect();
                parts.join(" & ")
            }
            Shape::Type(ty) => self.of_type(&ty),
            Shape::Types(types) => union(types.iter().map(|ty| self.of_type(ty)).collect()),
        }
    }

    /// The name a `$defs` entry gets.
    pub fn def_name(&self, key: &str) -> String {
        format!("{}{}", self.prefix, pascal_case(key))
    }

    fn of_type(&self, ty: &Type) -> String {
        match ty {
            Type::Null => "null".to_owned(),
            Type::Boolean => "boolean".to_owned(),
            Type::String => "string".to_owned(),
            Type::Integer | Type::Number => "number".to_owned(),
            Type::Array(array) => self.array(array),
            Type::Object(object) => self.object(object),
            Type::Other => "unknown".to_owned(),
        }
    }

    fn array(&self, array: &Array) -> String {
        match array {
            Array::Tuple(prefix) => {
                let items: Vec<String> = prefix.iter().map(|item| self.type_of(item)).collect();
                format!("[{}]", items.join(", "))
            }
            Array::List(item) => {
                let item = item.map_or_else(|| "unknown".to_owned(), |i| self.type_of(i));
                format!("{}[]", wrap(&item))
            }
        }
    }

    fn object(&self, object: &Object) -> String {
        let mut fields: Vec<String> = object
            .properties
            .iter()
            .map(|p| {
                let optional = if p.required { "" } else { "?" };
                format!("{}{optional}: {}", property_key(p.key), self.type_of(p.schema))
            })
            .collect();
        // Extra keys: typed by `additionalProperties`, forbidden by `false`, anything when absent and the
        // object names no properties.
        match object.additional {
            Some(Value::Bool(false)) => {}
            Some(extra) => fields.push(format!("[key: string]: {}", self.type_of(extra))),
            None if fields.is_empty() => fields.push("[key: string]: unknown".to_owned()),
            None => {}
        }
        format!("{{ {} }}", fields.join("; "))
    }
}

/// A JSON value as a TypeScript literal type (`"red"`, `3`, `true`, `null`).
fn literal(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        _ => "unknown".to_owned(),
    }
}

fn union(mut members: Vec<String>) -> String {
    members.dedup();
    match members.len() {
        0 => "never".to_owned(),
        1 => members.remove(0),
        _ => members.iter().map(|m| wrap(m)).collect::<Vec<_>>().join(" | "),
    }
}

/// Parenthesises a union or intersection where it would bind wrongly (before `[]`, inside `&`).
fn wrap(ty: &str) -> String {
    if top_level(ty).any(|(_, c)| c == '|' || c == '&') {
        format!("({ty})")
    } else {
        ty.to_owned()
    }
}

/// Whether `null` is a value of the type `ty` (as [`TypeNamer::type_of`] writes types): `unknown`, `null`,
/// or a union with such a member. A method whose `data` admits `null` may be called without `data`,
/// which the protocol reads as `null`.
pub fn admits_null(ty: &str) -> bool {
    let mut start = 0;
    let mut members = Vec::new();
    for (at, c) in top_level(ty) {
        if c == '|' {
            members.push(&ty[start..at]);
            start = at + 1;
        }
    }
    members.push(&ty[start..]);
    members.iter().any(|m| matches!(m.trim(), "null" | "unknown"))
}

/// The characters of `ty` outside brackets and string literals, with their byte offsets: where a
/// top-level `|` or `&` would be. A bracket or `|` inside a literal (`"a|b"`, `"}"`) is not one.
fn top_level(ty: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
    ty.char_indices().filter(move |&(_, c)| {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            return false;
        }
        match c {
            '"' => quoted = true,
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' | '>' => depth -= 1,
            _ => return depth == 0,
        }
        false
    })
}

/// An object key as written in a type: bare when it is an identifier, else quoted.
fn property_key(key: &str) -> String {
    if is_identifier(key) {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

/// Whether `name` can be written bare in TypeScript.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `todo_item`, `todo-item`, `todoItem` → `TodoItem`; characters no identifier may hold are dropped.
pub fn pascal_case(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase()).into_iter();
            first.chain(chars).collect::<String>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(schema: Value) -> String {
        TypeNamer { prefix: "Tag" }.type_of(&schema)
    }

    #[test]
    fn scalars_and_any() {
        assert_eq!(ts(json!({})), "unknown");
        assert_eq!(ts(json!(true)), "unknown");
        assert_eq!(ts(json!({"type": "integer"})), "number");
        assert_eq!(ts(json!({"type": ["string", "null"]})), "string | null");
    }

    #[test]
    fn objects_mark_optional_fields_and_extra_keys() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "note-x": {"type": "string"}},
            "required": ["a"],
            "additionalProperties": false
        });
        assert_eq!(ts(schema), r#"{ a: number; "note-x"?: string }"#);
        assert_eq!(ts(json!({"type": "object"})), "{ [key: string]: unknown }");
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "boolean"}})),
            "{ [key: string]: boolean }"
        );
    }

    #[test]
    fn arrays_enums_unions_and_refs() {
        assert_eq!(
            ts(json!({"type": "array", "items": {"enum": ["a", 1]}})),
            r#"("a" | 1)[]"#
        );
        assert_eq!(
            ts(json!({"prefixItems": [{"type": "string"}, {"const": null}], "type": "array"})),
            "[string, null]"
        );
        assert_eq!(
            ts(json!({"oneOf": [{"const": "tagged"}, {"type": "boolean"}]})),
            r#""tagged" | boolean"#
        );
        assert_eq!(ts(json!({"$ref": "#/$defs/todo_item"})), "TagTodoItem");
        assert_eq!(ts(json!({"$ref": "https://elsewhere"})), "unknown");
    }

    #[test]
    fn brackets_and_bars_inside_string_literals_do_not_split_a_union() {
        // An enum of strings holding `}` and `|`: still one union, parenthesised before `[]`.
        assert_eq!(
            ts(json!({"type": "array", "items": {"enum": ["}", "a|b"]}})),
            r#"("}" | "a|b")[]"#
        );
        assert_eq!(ts(json!({"type": "array", "items": {"const": "a|b"}})), r#""a|b"[]"#);
        assert_eq!(
            ts(json!({"type": "array", "items": {"const": "say \"|\""}})),
            r#""say \"|\""[]"#
        );
    }

    #[test]
    fn null_is_admitted_by_unknown_null_and_unions_with_null() {
        for (schema, admits) in [
            (json!({}), true),
            (json!(true), true),
            (json!({"title": "AnyValue"}), true),
            (json!({"type": "null"}), true),
            (
                json!({"type": ["object", "null"], "properties": {"a": {"type": "null"}}}),
                true,
            ),
            (json!({"anyOf": [{"type": "string"}, {"const": null}]}), true),
            (
                json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}),
                false,
            ),
            (json!({"type": "array", "items": {"type": ["string", "null"]}}), false),
            (json!({"enum": ["null", "unknown"]}), false),
            (json!({"type": "string"}), false),
            (json!(false), false),
        ] {
            let ty = ts(schema.clone());
            assert_eq!(admits_null(&ty), admits, "{schema} as {ty}");
        }
    }
}
