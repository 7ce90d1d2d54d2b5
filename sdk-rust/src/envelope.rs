//! The request envelope `{"head": {"method": …, "token": …, …}, "data": …}`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
        serde_json::from_slice(payload).map_err(bad_envelope)
    }

    /// Encodes the request as a payload.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Request always serialises")
    }
}

/// The `bad_request` error for a payload that is not a request envelope.
fn bad_envelope(e: serde_json::Error) -> MethodError {
    let message = if e.is_data() {
        format!("the request must be {{\"head\": {{\"method\": \"…\"}}, \"data\": …}}: {e}")
    } else {
        format!("the request is not valid JSON: {e}")
    };
    MethodError::bad_request(message)
}

/// A request whose `data` is still the JSON text it arrived as: what [`crate::dispatch()`] decodes for a
/// backend that [takes JSON text](crate::Backend::takes_json), so that a handler whose language parses JSON
/// itself (Node's `JSON.parse`) gets `data` without a [`Value`] being built and written out again.
///
/// `data` has been read past but not yet checked as strictly as a [`Value`] would be (numbers in range,
/// no lone surrogates, nesting within the parser's limit); [`RawRequest::data_json`] and
/// [`RawRequest::data_value`] do that check, and every consumer goes through one of them, so a request
/// with bad `data` gets the same `bad_request` reply it would get from [`Request::from_slice`].
///
/// It borrows `data` from the payload: a handler takes what it needs before it returns its future.
#[derive(Debug, Clone)]
pub struct RawRequest<'a> {
    /// Routing and identity.
    pub head: Head,
    /// The method's argument as sent; `None` when absent or `null`.
    data: Option<&'a RawValue>,
}

impl<'a> RawRequest<'a> {
    /// Decodes a request payload's `head` and finds its `data`, or says what is wrong with it as a
    /// `bad_request` error.
    pub fn from_slice(payload: &'a [u8]) -> Result<RawRequest<'a>, MethodError> {
        /// The envelope with `data` left as text.
        #[derive(Deserialize)]
        struct Envelope<'a> {
            head: Head,
            #[serde(default, borrow)]
            data: Option<&'a RawValue>,
        }
        let envelope: Envelope = serde_json::from_slice(payload).map_err(bad_envelope)?;
        Ok(RawRequest {
            head: envelope.head,
            data: envelope.data,
        })
    }

    /// `data` as JSON text (`null` when absent), once it has passed the check a [`Value`] would make.
    pub fn data_json(&self) -> Result<&'a str, MethodError> {
        let Some(data) = self.data else {
            return Ok("null");
        };
        let mut checker = serde_json::Deserializer::from_str(data.get());
        Strict { levels: DATA_LEVELS }
            .deserialize(&mut checker)
            .map_err(|e| MethodError::bad_request(format!("the request is not valid JSON: {e}")))?;
        Ok(data.get())
    }

    /// `data` as a [`Value`], exactly as [`Request::from_slice`] would have decoded it.
    pub fn data_value(&self) -> Result<Value, MethodError> {
        let Some(data) = self.data else {
            return Ok(Value::Null);
        };
        let text = data.get();
        let value: Value = serde_json::from_str(text)
            .map_err(|e| MethodError::bad_request(format!("the request is not valid JSON: {e}")))?;
        // Inside the envelope, `data` had one level fewer to nest in than it has alone. A value that deep
        // needs two brackets a level, so only a long text can be.
        if text.len() >= 2 * usize::from(DATA_LEVELS + 1) && depth(&value) > usize::from(DATA_LEVELS) {
            return Err(MethodError::bad_request(
                "the request is not valid JSON: recursion limit exceeded",
            ));
        }
        Ok(value)
    }

    /// The whole request, `data` decoded as [`Request::from_slice`] would have.
    pub fn into_request(self) -> Result<Request, MethodError> {
        let data = self.data_value()?;
        Ok(Request { head: self.head, data })
    }
}

/// How deep `data` may nest: serde_json's limit is 128 levels for the whole payload, of which the
/// envelope's object takes one and the last is never entered.
const DATA_LEVELS: u8 = 126;

/// How many arrays and objects deep a value nests.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Reads a JSON value as [`Value`]'s `Deserialize` does, through `deserialize_any`, so that the parser
/// makes the same checks, and keeps nothing. `levels` is how many more arrays or objects may open.
#[derive(Clone, Copy)]
struct Strict {
    levels: u8,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

impl Strict {
    /// The seed for what an array or object holds, or the parser's own error when it may not open.
    fn enter<E: de::Error>(self) -> Result<Strict, E> {
        match self.levels.checked_sub(1) {
            Some(levels) => Ok(Strict { levels }),
            None => Err(E::custom("recursion limit exceeded")),
        }
    }
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
    fn raw_requests_decode_and_refuse_as_requests_do() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let mut payloads: Vec<String> = [
            r#"{"head":{"method":"a"}}"#,
            r#"{"head":{"method":"a"},"data":null}"#,
            r#"{"data":{"x":[1,-2,3.5e3,"s\n\u00e9",true,null]},"head":{"method":"a","token":"t"}}"#,
            r#"{"head":{"method":"a"},"data":1e400}"#,
            r#"{"head":{"method":"a"},"data":[-1e400]}"#,
            r#"{"head":{"method":"a"},"data":"\ud800"}"#,
            r#"{"head":{"method":"a"},"data":{"\udc00":1}}"#,
            r#"{"head":{"method":"a"},"data":"\ud83d\ude00"}"#,
            r#"{"head":{"method":"a"},"data":{"k":1,"k":2}}"#,
            r#"{"head":{"method":"a"},"data":[1,]}"#,
            r#"{"head":{"method":"a"},"data":tru}"#,
            r#"{"head":{"method":"a"},"extra":1e400,"data":1}"#,
            r#"{"head":{"method":"a"},"data":1,"data":2}"#,
            r#"{"head":{"method":3},"data":1}"#,
            r#"{"data":1}"#,
            r#"[]"#,
            "",
        ]
        .map(str::to_owned)
        .to_vec();
        for levels in [1, 125, 126, 127, 128, 200] {
            payloads.push(format!(r#"{{"head":{{"method":"a"}},"data":{}}}"#, nested(levels)));
            payloads.push(format!(
                r#"{{"head":{{"method":"a"}},"data":{{"k":{}}}}}"#,
                nested(levels)
            ));
        }
        for payload in &payloads {
            let expected = Request::from_slice(payload.as_bytes());
            let raw = RawRequest::from_slice(payload.as_bytes());
            let as_json = raw.as_ref().map_err(Clone::clone).and_then(|raw| {
                let text = raw.data_json()?;
                Ok(serde_json::from_str::<Value>(text).unwrap())
            });
            let decoded = raw.and_then(RawRequest::into_request);
            match (&expected, &decoded) {
                (Ok(expected), Ok(decoded)) => {
                    assert_eq!(expected, decoded, "{payload}");
                    assert_eq!(as_json.as_ref().ok(), Some(&expected.data), "{payload}");
                }
                (Err(expected), Err(decoded)) => {
                    assert_eq!(expected.code, decoded.code, "{payload}");
                    assert!(as_json.is_err(), "{payload}");
                }
                _ => panic!("{payload}: expected {expected:?}, decoded {decoded:?}"),
            }
        }
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
