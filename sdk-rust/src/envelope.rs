//! The request envelope `{"head": {"method": …, "token": …, …}, "data": …}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::MethodError;

/// Method names beginning with this are the protocol's own (`_ping`, `_pipeline`, `_describe`).
pub const RESERVED_PREFIX: char = '_';

/// The `head` of a request: routing and identity fields, set by the browser or by the proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// The method to call: the key handlers are registered under.
    pub method: String,
    /// The caller's token, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Every other field of `head`, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Head {
    /// A head that names only a method.
    pub fn new(method: impl Into<String>) -> Self {
        Head {
            method: method.into(),
            token: None,
            extra: Map::new(),
        }
    }

    /// The same head with a token, for a client that calls on a user's behalf.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same head addressed to a module, for a client that calls through the proxy's raw-frame port
    /// (`[server] raw_frames = true`), which routes each request by `head.module`.
    pub fn with_module(mut self, module: impl Into<String>) -> Self {
        self.extra.insert("module".to_owned(), Value::String(module.into()));
        self
    }

    /// A field of `head` other than `method` and `token`.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.extra.get(field)
    }
}

/// One decoded request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Routing and identity.
    pub head: Head,
    /// The method's argument: any JSON value (`null` when absent).
    #[serde(default)]
    pub data: Value,
}

impl Request {
    /// A request for `method` with `data`.
    pub fn new(method: impl Into<String>, data: Value) -> Self {
        Request {
            head: Head::new(method),
            data,
        }
    }

    /// Decodes a request payload, or says what is wrong with it as a `bad_request` error.
    pub fn from_slice(payload: &[u8]) -> Result<Request, MethodError> {
        serde_json::from_slice(payload).map_err(|e| {
            let message = if e.is_data() {
                format!("the request must be {{\"head\": {{\"method\": \"…\"}}, \"data\": …}}: {e}")
            } else {
                format!("the request is not valid JSON: {e}")
            };
            MethodError::bad_request(message)
        })
    }

    /// Encodes the request as a payload.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Request always serialises")
    }
}

/// `head.method` of a request payload, reading nothing else into memory; `None` if the payload has none.
pub(crate) fn method_of(payload: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        head: ProbeHead<'a>,
    }
    #[derive(Deserialize)]
    struct ProbeHead<'a> {
        // Borrowed unless the name holds escapes.
        #[serde(borrow)]
        method: Cow<'a, str>,
    }
    serde_json::from_slice::<Probe<'_>>(payload)
        .ok()
        .map(|probe| probe.head.method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_every_head_field() {
        let req = Request::from_slice(br#"{"head":{"method":"add","token":"t","trace":7},"data":[1]}"#).unwrap();
        assert_eq!(req.head.method, "add");
        assert_eq!(req.head.token.as_deref(), Some("t"));
        assert_eq!(req.head.get("trace"), Some(&json!(7)));
        assert_eq!(req.data, json!([1]));
    }

    #[test]
    fn missing_data_is_null_and_missing_method_is_bad_request() {
        assert_eq!(
            Request::from_slice(br#"{"head":{"method":"x"}}"#).unwrap().data,
            Value::Null
        );
        for bad in [
            &br#"{"data":1}"#[..],
            br#"{"head":{}}"#,
            b"not json",
            br#"{"head":{"method":3}}"#,
        ] {
            assert_eq!(Request::from_slice(bad).unwrap_err().code, "bad_request");
        }
    }
}
