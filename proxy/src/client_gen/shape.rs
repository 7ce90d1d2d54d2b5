//! What a JSON Schema (draft 2020-12, the subset contracts use) says a value is, read once for every
//! language: [`super::types`] maps a [`Shape`] to TypeScript, [`super::py_types`] to Python. Pure.
//!
//! The keywords are read in one order, the first that applies deciding: `$ref`, `const`, `enum`,
//! `oneOf`/`anyOf`, `allOf`, then `type` (a name or a list of names; without it `properties` implies an
//! object and `items` an array). A keyword of the wrong JSON type is passed over; what is left unknown
//! is [`Shape::Any`], so that a mapping writes a looser type, never a wrong one.

use serde_json::{Map, Value};

/// What a schema says its values are.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape<'a> {
    /// Any value: `true`, `{}`, a schema that says nothing the mappings know, a `$ref` outside the
    /// document, or something that is no schema at all.
    Any,
    /// No value: `false`.
    Never,
    /// `$ref` to `#/$defs/<key>`: the key.
    Ref(&'a str),
    /// `const`: exactly this value.
    Const(&'a Value),
    /// `enum`: one of these values.
    Enum(&'a [Value]),
    /// `oneOf` or `anyOf`: a value that fits (one of) these schemas.
    OneOf(&'a [Value]),
    /// `allOf`: a value that fits all of these schemas.
    AllOf(&'a [Value]),
    /// `type` as one name, or implied by `properties` or `items`.
    Type(Type<'a>),
    /// `type` as a list of names: a value of any of them (names that are no strings left out).
    Types(Vec<Type<'a>>),
}

/// One JSON type, with what the schema says of its contents where it has any.
#[derive(Debug, Clone, PartialEq)]
pub enum Type<'a> {
    Null,
    Boolean,
    String,
    Integer,
    Number,
    Array(Array<'a>),
    Object(Object<'a>),
    /// A name JSON Schema does not have.
    Other,
}

/// An array's items.
#[derive(Debug, Clone, PartialEq)]
pub enum Array<'a> {
    /// `prefixItems`: one schema an item, in order.
    Tuple(&'a [Value]),
    /// `items`: one schema every item fits, or nothing said of them.
    List(Option<&'a Value>),
}

/// An object's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<'a> {
    /// `properties`, in the document's order, each marked whether `required` names it.
    pub properties: Vec<Property<'a>>,
    /// `additionalProperties` as written (`false` forbids extra keys); `None` when absent.
    pub additional: Option<&'a Value>,
}

/// One key of `properties`.
#[derive(Debug, Clone, PartialEq)]
pub struct Property<'a> {
    pub key: &'a str,
    pub schema: &'a Value,
    pub required: bool,
}

impl<'a> Shape<'a> {
    /// The reading of `schema`.
    pub fn of(schema: &'a Value) -> Self {
        match schema {
            Value::Bool(false) => Shape::Never,
            Value::Object(schema) => Self::of_object(schema),
            _ => Shape::Any,
        }
    }

    fn of_object(schema: &'a Map<String, Value>) -> Self {
        if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
            return target.strip_prefix("#/$defs/").map_or(Shape::Any, Shape::Ref);
        }
        if let Some(value) = schema.get("const") {
            return Shape::Const(value);
        }
        let list = |key| schema.get(key).and_then(Value::as_array).map(Vec::as_slice);
        if let Some(values) = list("enum") {
            return Shape::Enum(values);
        }
        if let Some(members) = list("oneOf").or_else(|| list("anyOf")) {
            return Shape::OneOf(members);
        }
        if let Some(members) = list("allOf") {
            return Shape::AllOf(members);
        }
        match schema.get("type") {
            Some(Value::String(name)) => Shape::Type(Type::named(name, schema)),
            Some(Value::Array(names)) => Shape::Types(
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|name| Type::named(name, schema))
                    .collect(),
            ),
            _ if schema.contains_key("properties") => Shape::Type(Type::named("object", schema)),
            _ if schema.contains_key("items") => Shape::Type(Type::named("array", schema)),
            _ => Shape::Any,
        }
    }
}

impl<'a> Type<'a> {
    fn named(name: &str, schema: &'a Map<String, Value>) -> Self {
        match name {
            "null" => Type::Null,
            "boolean" => Type::Boolean,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "array" => Type::Array(match schema.get("prefixItems").and_then(Value::as_array) {
                Some(prefix) => Array::Tuple(prefix),
                None => Array::List(schema.get("items")),
            }),
            "object" => Type::Object(Object::of(schema)),
            _ => Type::Other,
        }
    }
}

impl<'a> Object<'a> {
    fn of(schema: &'a Map<String, Value>) -> Self {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, schema)| Property {
                key,
                schema,
                required: required.contains(&key.as_str()),
            })
            .collect();
        Object {
            properties,
            additional: schema.get("additionalProperties"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_and_non_schemas() {
        assert_eq!(Shape::of(&json!(true)), Shape::Any);
        assert_eq!(Shape::of(&json!(false)), Shape::Never);
        assert_eq!(Shape::of(&json!({})), Shape::Any);
        assert_eq!(Shape::of(&json!({"title": "AnyValue"})), Shape::Any);
        assert_eq!(Shape::of(&json!(5)), Shape::Any);
        assert_eq!(Shape::of(&json!(null)), Shape::Any);
    }

    #[test]
    fn refs_inside_the_document_only() {
        assert_eq!(
            Shape::of(&json!({"$ref": "#/$defs/todo_item"})),
            Shape::Ref("todo_item")
        );
        assert_eq!(Shape::of(&json!({"$ref": "https://elsewhere"})), Shape::Any);
        // A `$ref` that is no string is passed over.
        assert_eq!(Shape::of(&json!({"$ref": 5, "type": "null"})), Shape::Type(Type::Null));
    }

    #[test]
    fn keywords_are_read_in_order() {
        let schema = json!({"$ref": "#/$defs/A", "const": 1, "enum": [2], "oneOf": [3], "allOf": [4]});
        assert_eq!(Shape::of(&schema), Shape::Ref("A"));
        let schema = json!({"const": 1, "enum": [2], "oneOf": [3], "allOf": [4], "type": "string"});
        assert_eq!(Shape::of(&schema), Shape::Const(&json!(1)));
        let schema = json!({"enum": [2], "oneOf": [3], "allOf": [4]});
        assert_eq!(Shape::of(&schema), Shape::Enum(&[json!(2)]));
        let schema = json!({"oneOf": [3], "anyOf": [5], "allOf": [4]});
        assert_eq!(Shape::of(&schema), Shape::OneOf(&[json!(3)]));
        let schema = json!({"anyOf": [5], "allOf": [4]});
        assert_eq!(Shape::of(&schema), Shape::OneOf(&[json!(5)]));
        let schema = json!({"allOf": [4], "type": "string"});
        assert_eq!(Shape::of(&schema), Shape::AllOf(&[json!(4)]));
        // Lists that are no lists are passed over.
        let schema = json!({"enum": "a", "oneOf": {}, "anyOf": 1, "allOf": null, "type": "boolean"});
        assert_eq!(Shape::of(&schema), Shape::Type(Type::Boolean));
        assert_eq!(Shape::of(&json!({"const": null})), Shape::Const(&Value::Null));
    }

    #[test]
    fn types_named_listed_and_implied() {
        for (name, ty) in [
            ("null", Type::Null),
            ("boolean", Type::Boolean),
            ("string", Type::String),
            ("integer", Type::Integer),
            ("number", Type::Number),
            ("teapot", Type::Other),
        ] {
            assert_eq!(Shape::of(&json!({ "type": name })), Shape::Type(ty));
        }
        assert_eq!(
            Shape::of(&json!({"type": ["string", 7, "null"]})),
            Shape::Types(vec![Type::String, Type::Null])
        );
        assert_eq!(Shape::of(&json!({"type": []})), Shape::Types(vec![]));
        let items = json!({"type": "string"});
        assert_eq!(
            Shape::of(&json!({"items": {"type": "string"}})),
            Shape::Type(Type::Array(Array::List(Some(&items))))
        );
        assert_eq!(
            Shape::of(&json!({"type": "object"})),
            Shape::Type(Type::Object(Object {
                properties: vec![],
                additional: None
            }))
        );
        // Without a `type` name, `properties` implies an object before `items` an array.
        let schema = json!({"type": 5, "properties": {}, "items": {}});
        assert!(matches!(Shape::of(&schema), Shape::Type(Type::Object(_))));
    }

    #[test]
    fn arrays_are_tuples_or_lists() {
        let schema = json!({"type": "array", "prefixItems": [{"type": "string"}], "items": false});
        assert_eq!(
            Shape::of(&schema),
            Shape::Type(Type::Array(Array::Tuple(&[json!({"type": "string"})])))
        );
        assert_eq!(
            Shape::of(&json!({"type": "array", "prefixItems": "no"})),
            Shape::Type(Type::Array(Array::List(None)))
        );
    }

    #[test]
    fn objects_list_properties_in_order_marked_required() {
        let schema = json!({
            "type": ["object", "null"],
            "properties": {"b": {"type": "integer"}, "a": true},
            "required": ["a", 3, "missing"],
            "additionalProperties": false
        });
        let (integer, any, no) = (json!({"type": "integer"}), json!(true), json!(false));
        let object = Object {
            properties: vec![
                Property {
                    key: "b",
                    schema: &integer,
                    required: false,
                },
                Property {
                    key: "a",
                    schema: &any,
                    required: true,
                },
            ],
            additional: Some(&no),
        };
        assert_eq!(Shape::of(&schema), Shape::Types(vec![Type::Object(object), Type::Null]));
        let schema = json!({"type": "object", "properties": [], "required": "a"});
        assert_eq!(
            Shape::of(&schema),
            Shape::Type(Type::Object(Object {
                properties: vec![],
                additional: None
            }))
        );
    }
}
