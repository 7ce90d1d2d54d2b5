//! `validate = true`: a request's `data` checked against its method's `data` schema from the backend's
//! `_describe` document (docs/PROTOCOL.md section 5), before any node sees it. Pure: the gateway fetches
//! the document and keeps one [`Validators`] per document.

use std::collections::HashMap;

use serde_json::Value;

/// Compiled `data` schemas of one contract document, by method name.
pub struct Validators {
    by_method: HashMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for Validators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validators")
            .field("methods", &self.by_method.len())
            .finish()
    }
}

/// Why a request's `data` does not fit its method.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub method: String,
    /// The offending field as a JSON Pointer into `data` (`""` is `data` itself).
    pub field: String,
    /// What the schema wanted there, without the client's value.
    pub expected: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = if self.field.is_empty() { "data" } else { &self.field };
        write!(
            f,
            "data for method '{}' is invalid at {field}: {}",
            self.method, self.expected
        )
    }
}

impl Validators {
    /// Compiles every method's `data` schema (draft 2020-12) of a document the gateway has checked
    /// with [`crate::contract::read_reply`]; a schema that does not compile is named in the error.
    pub fn build(document: &[u8]) -> Result<Validators, String> {
        let document: Value = serde_json::from_slice(document).map_err(|e| e.to_string())?;
        let mut by_method = HashMap::new();
        for method in document["methods"].as_array().into_iter().flatten() {
            let Some(name) = method["name"].as_str() else { continue };
            let schema = method.get("data").cloned().unwrap_or(Value::Bool(true));
            let validator = jsonschema::draft202012::new(&schema)
                .map_err(|e| format!("method '{name}': its data schema does not compile: {e}"))?;
            by_method.insert(name.to_owned(), validator);
        }
        Ok(Validators { by_method })
    }

    /// Checks a request payload (already known to be JSON). A payload without a string `head.method`, or
    /// naming a method the document does not list, passes: the backend answers it (`bad_request`,
    /// `method_not_found`). A missing `data` is checked as `null`.
    pub fn check(&self, payload: &[u8]) -> Result<(), Invalid> {
        let Ok(request) = serde_json::from_slice::<Value>(payload) else {
            return Ok(());
        };
        let Some(method) = request["head"]["method"].as_str() else {
            return Ok(());
        };
        let Some(validator) = self.by_method.get(method) else {
            return Ok(());
        };
        let data = request.get("data").unwrap_or(&Value::Null);
        let first = validator
            .iter_errors(data)
            .next()
            .map(|error| (error.instance_path().to_string(), error.masked().to_string()));
        match first {
            None => Ok(()),
            Some((field, expected)) => Err(Invalid {
                method: method.to_owned(),
                field,
                expected,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Validators {
        Validators::build(include_bytes!("../tests/fixtures/contract/todo.json")).unwrap()
    }

    #[test]
    fn fitting_data_passes_and_unknown_methods_pass_through() {
        let v = fixture();
        assert_eq!(v.check(br#"{"head":{"method":"add"},"data":{"a":1,"b":2}}"#), Ok(()));
        assert_eq!(v.check(br#"{"head":{"method":"any"},"data":[1,"x",null]}"#), Ok(()));
        assert_eq!(v.check(br#"{"head":{"method":"nope"},"data":7}"#), Ok(()));
        assert_eq!(v.check(br#"{"head":{},"data":7}"#), Ok(()));
    }

    #[test]
    fn a_mismatch_names_the_field_and_what_was_expected_without_the_value() {
        let v = fixture();
        let wrong = v
            .check(br#"{"head":{"method":"add"},"data":{"a":"secret-1","b":2}}"#)
            .unwrap_err();
        assert_eq!(wrong.field, "/a");
        assert!(wrong.expected.contains("integer"), "{wrong}");
        assert!(!wrong.to_string().contains("secret-1"), "{wrong}");
        let nested = v
            .check(br#"{"head":{"method":"tag"},"data":{"item":{"id":1,"color":"pink"}}}"#)
            .unwrap_err();
        assert_eq!(nested.field, "/item/color", "$ref into $defs is followed: {nested}");
        let missing = v.check(br#"{"head":{"method":"add"}}"#).unwrap_err();
        assert_eq!(missing.field, "", "{missing}");
    }

    #[test]
    fn a_schema_that_does_not_compile_is_named() {
        let bad = br#"{"methods":[{"name":"add","doc":null,"data":{"type":"integr"},"result":{}}]}"#;
        let error = Validators::build(bad).unwrap_err();
        assert!(error.contains("'add'"), "{error}");
    }
}
