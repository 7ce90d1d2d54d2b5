//! `_describe`: a backend's own account of its methods, as JSON Schemas (PROTOCOL.md section 5).
//!
//! The document is `{"methods":[{"name","doc","data","result"}, ...]}`, methods in name order. This file
//! holds the one definition of that shape: [`Router`](crate::Router) builds it, the language bindings hand
//! their descriptions to the router, and `modproxy conform` checks a backend's answer with
//! [`check_document`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The reserved method that asks a backend to describe its methods.
pub const DESCRIBE_METHOD: &str = "_describe";

/// What `_describe` says about one method. The default says nothing: no doc, any JSON in and out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodDescription {
    /// What the method does, for people; `None` is sent as `null`.
    #[serde(default)]
    pub doc: Option<String>,
    /// JSON Schema (draft 2020-12) of the request's `data`; `{}` accepts any JSON.
    #[serde(default = "any_json")]
    pub data: Value,
    /// JSON Schema (draft 2020-12) of the reply; `{}` is any JSON.
    #[serde(default = "any_json")]
    pub result: Value,
}

impl Default for MethodDescription {
    fn default() -> Self {
        MethodDescription {
            doc: None,
            data: any_json(),
            result: any_json(),
        }
    }
}

/// The schema that accepts any JSON value.
pub fn any_json() -> Value {
    Value::Object(Map::new())
}

/// The `_describe` reply for `methods`, given as (name, description) pairs; sorted here by name.
pub fn document<'a>(methods: impl IntoIterator<Item = (&'a str, &'a MethodDescription)>) -> Value {
    let mut methods: Vec<_> = methods.into_iter().collect();
    methods.sort_unstable_by_key(|(name, _)| *name);
    let methods: Vec<Value> = methods
        .into_iter()
        .map(|(name, d)| json!({"name": name, "doc": d.doc, "data": d.data, "result": d.result}))
        .collect();
    json!({ "methods": methods })
}

/// The JSON Schema of `T`, as `_describe` sends it: draft 2020-12, definitions under `$defs`, without the
/// `$schema` key (the protocol names the draft once), and `{}` rather than `true` for "any JSON". The root's
/// `title` (the type's name) stays: a client generator names its types with it.
#[cfg(feature = "schemars")]
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    match schema.to_value() {
        Value::Bool(true) => any_json(),
        Value::Object(mut fields) => {
            fields.remove("$schema");
            Value::Object(fields)
        }
        other => other,
    }
}

/// Whether `reply` is a well-formed `_describe` document; the error names the first thing wrong.
/// Schemas are checked only for being JSON Schemas at all (an object or a boolean), not compiled.
pub fn check_document(reply: &Value) -> Result<(), String> {
    let methods = reply
        .get("methods")
        .and_then(Value::as_array)
        .ok_or("the reply has no \"methods\" array")?;
    let mut previous: Option<&str> = None;
    for (i, method) in methods.iter().enumerate() {
        let name = method
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("methods[{i}] has no string \"name\""))?;
        if name.is_empty() || name.starts_with(crate::envelope::RESERVED_PREFIX) {
            return Err(format!(
                "methods[{i}] is named {name:?}, which no application method may be"
            ));
        }
        if previous.is_some_and(|p| p >= name) {
            return Err(format!("methods[{i}] {name:?} is out of name order (or repeated)"));
        }
        previous = Some(name);
        match method.get("doc") {
            Some(Value::Null | Value::String(_)) => {}
            _ => return Err(format!("methods[{i}] {name:?}: \"doc\" must be a string or null")),
        }
        for key in ["data", "result"] {
            if !matches!(method.get(key), Some(Value::Object(_) | Value::Bool(_))) {
                return Err(format!(
                    "methods[{i}] {name:?}: {key:?} must be a JSON Schema (an object)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_in_name_order_with_null_docs() {
        let typed = MethodDescription {
            doc: Some("Adds.".into()),
            data: json!({"type": "integer"}),
            result: json!({"type": "string"}),
        };
        let untyped = MethodDescription::default();
        let doc = document([("b", &untyped), ("a", &typed)]);
        assert_eq!(
            doc,
            json!({"methods": [
                {"name": "a", "doc": "Adds.", "data": {"type": "integer"}, "result": {"type": "string"}},
                {"name": "b", "doc": null, "data": {}, "result": {}},
            ]})
        );
        assert_eq!(check_document(&doc), Ok(()));
    }

    #[test]
    fn malformed_documents_are_named() {
        let cases = [
            (json!({}), "\"methods\""),
            (
                json!({"methods": [{"doc": null, "data": {}, "result": {}}]}),
                "\"name\"",
            ),
            (
                json!({"methods": [{"name": "_ping", "doc": null, "data": {}, "result": {}}]}),
                "_ping",
            ),
            (
                json!({"methods": [
                    {"name": "b", "doc": null, "data": {}, "result": {}},
                    {"name": "a", "doc": null, "data": {}, "result": {}},
                ]}),
                "order",
            ),
            (
                json!({"methods": [{"name": "a", "doc": 1, "data": {}, "result": {}}]}),
                "\"doc\"",
            ),
            (
                json!({"methods": [{"name": "a", "doc": null, "data": "int", "result": {}}]}),
                "\"data\"",
            ),
            (
                json!({"methods": [{"name": "a", "doc": null, "data": {}}]}),
                "\"result\"",
            ),
        ];
        for (reply, named) in cases {
            let error = check_document(&reply).unwrap_err();
            assert!(error.contains(named), "{reply}: {error}");
        }
    }

    #[cfg(feature = "schemars")]
    #[test]
    fn schemas_come_from_the_types() {
        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct AddTodo {
            title: String,
            done: Option<bool>,
        }
        let schema = schema_of::<AddTodo>();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], json!(["title"]));
        assert!(schema.get("$schema").is_none());
        // Any JSON: no constraint beyond a title.
        let any = schema_of::<Value>();
        assert!(any.as_object().unwrap().keys().all(|k| k == "title"), "{any}");
    }
}
